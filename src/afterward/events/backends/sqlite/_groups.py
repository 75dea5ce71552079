"""The SQLite state store's SQL: positions, processed IDs, key versions, claims and dead
letters, as functions of a connection (writes run inside a transaction)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from afterward.events._records import Done, Pruned, StoredDeadLetter, StoredEvent
from afterward.events._wire import pack_headers, unpack_headers

__all__ = [
    "begin_batch",
    "bind_cluster",
    "claim",
    "commit",
    "count_attempt",
    "dead_letter",
    "dead_letters",
    "delete_dead_letter",
    "groups",
    "key_versions",
    "positions",
    "processed",
    "prune_state",
    "register",
    "release",
    "rewind",
    "store_dead_letter",
]

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = 500) -> list[Sequence[T]]:
    # SQLite caps the parameters of one statement.
    return [items[i : i + size] for i in range(0, len(items), size)]


def _set_positions(
    conn: sqlite3.Connection, group: str, topic: str, positions: Mapping[int, int]
) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO afterward_positions VALUES (?, ?, ?, ?)",
        [(group, topic, p, o) for p, o in positions.items()],
    )


def positions(conn: sqlite3.Connection, group: str, topic: str) -> dict[int, int] | None:
    """The group's positions in ``topic``, ``None`` if it never registered."""
    rows = conn.execute(
        "SELECT part, pos FROM afterward_positions WHERE grp = ? AND topic = ?", (group, topic)
    ).fetchall()
    return dict(rows) if rows else None


def every_position(conn: sqlite3.Connection) -> dict[tuple[str, str], dict[int, int]]:
    """Every registered (group, topic) with its positions, in one query."""
    found: dict[tuple[str, str], dict[int, int]] = {}
    for group, topic, part, pos in conn.execute(
        "SELECT grp, topic, part, pos FROM afterward_positions"
    ):
        found.setdefault((group, topic), {})[part] = pos
    return found


def register(conn: sqlite3.Connection, group: str, topic: str, start: Mapping[int, int]) -> None:
    """Create the group's positions at ``start`` unless it has some."""
    exists = conn.execute(
        "SELECT 1 FROM afterward_positions WHERE grp = ? AND topic = ?", (group, topic)
    ).fetchone()
    if not exists:
        _set_positions(conn, group, topic, dict(start) or {0: 0})


def groups(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every registered group with its topics."""
    found: dict[str, list[str]] = {}
    for group, topic in conn.execute(
        "SELECT DISTINCT grp, topic FROM afterward_positions ORDER BY grp, topic"
    ):
        found.setdefault(group, []).append(topic)
    return found


def claim(conn: sqlite3.Connection, group: str, topic: str, owner: str, ttl: float) -> bool:
    """Take or renew the claim unless another owner holds an unexpired one."""
    now = time.time()
    cursor = conn.execute(
        "INSERT INTO afterward_claims VALUES (?, ?, ?, ?) "
        "ON CONFLICT (grp, topic) DO UPDATE SET owner = excluded.owner, "
        "expires = excluded.expires "
        "WHERE afterward_claims.owner = excluded.owner OR afterward_claims.expires < ?",
        (group, topic, owner, now + ttl, now),
    )
    return cursor.rowcount == 1


def release(conn: sqlite3.Connection, group: str, topic: str, owner: str) -> None:
    """Drop the claim if ``owner`` holds it."""
    conn.execute(
        "DELETE FROM afterward_claims WHERE grp = ? AND topic = ? AND owner = ?",
        (group, topic, owner),
    )


def commit(
    conn: sqlite3.Connection,
    group: str,
    topic: str,
    moved: Mapping[int, int],
    done: Sequence[Done],
) -> None:
    """Positions, processed IDs and raised key versions, in the caller's transaction."""
    _set_positions(conn, group, topic, moved)
    now = time.time()
    conn.executemany(
        "INSERT OR IGNORE INTO afterward_processed VALUES (?, ?, ?, ?)",
        [(group, d.event_id, topic, now) for d in done if d.processed],
    )
    conn.executemany(
        "INSERT INTO afterward_versions VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (grp, topic, key) DO UPDATE SET version = excluded.version, "
        "at = excluded.at WHERE excluded.version > afterward_versions.version",
        [
            (group, topic, d.key, d.version, now)
            for d in done
            if d.key is not None and d.version is not None
        ],
    )


def processed(conn: sqlite3.Connection, group: str, event_ids: Sequence[str]) -> set[str]:
    """The subset of ``event_ids`` the group recorded."""
    found: set[str] = set()
    for chunk in _chunks(event_ids):
        marks = ",".join("?" * len(chunk))
        found.update(
            row[0]
            for row in conn.execute(
                f"SELECT id FROM afterward_processed WHERE grp = ? AND id IN ({marks})",
                (group, *chunk),
            )
        )
    return found


def key_versions(
    conn: sqlite3.Connection, group: str, topic: str, keys: Sequence[str]
) -> dict[str, int]:
    """The highest processed version per key."""
    found: dict[str, int] = {}
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        found.update(
            conn.execute(
                "SELECT key, version FROM afterward_versions "
                f"WHERE grp = ? AND topic = ? AND key IN ({marks})",
                (group, topic, *chunk),
            ).fetchall()
        )
    return found


def rewind(
    conn: sqlite3.Connection, group: str, topic: str, moved: Mapping[int, int], forget: bool
) -> None:
    """Set the positions; with ``forget``, drop the topic's processed IDs and versions."""
    _set_positions(conn, group, topic, moved)
    if forget:
        for table in ("afterward_processed", "afterward_versions"):
            conn.execute(f"DELETE FROM {table} WHERE grp = ? AND topic = ?", (group, topic))


def begin_batch(
    conn: sqlite3.Connection, group: str, topic: str, spans: Mapping[int, tuple[int, int]]
) -> dict[int, int]:
    """Record the batch's spans; return the ends of uncommitted earlier ones it repeats."""
    redelivered: dict[int, int] = {}
    for partition, (start, end) in spans.items():
        earlier = conn.execute(
            "SELECT start, stop FROM afterward_batches WHERE grp = ? AND topic = ? AND part = ?",
            (group, topic, partition),
        ).fetchone()
        if earlier is not None and earlier[0] <= start < earlier[1]:
            redelivered[partition] = earlier[1]
        else:
            conn.execute(
                "INSERT OR REPLACE INTO afterward_batches VALUES (?, ?, ?, ?, ?)",
                (group, topic, partition, start, end),
            )
    return redelivered


def bind_cluster(conn: sqlite3.Connection, cluster_id: str) -> str:
    """Store the cluster this file serves unless one is stored; return it."""
    conn.execute("INSERT OR IGNORE INTO afterward_meta VALUES ('cluster', ?)", (cluster_id,))
    (stored,) = conn.execute("SELECT value FROM afterward_meta WHERE name = 'cluster'").fetchone()
    return str(stored)


def count_attempt(conn: sqlite3.Connection, group: str, event_id: str) -> int:
    """One more delivery of ``event_id`` to ``group``; the count so far."""
    (count,) = conn.execute(
        "INSERT INTO afterward_deliveries VALUES (?, ?, 1) "
        "ON CONFLICT (grp, id) DO UPDATE SET n = n + 1 RETURNING n",
        (group, event_id),
    ).fetchone()
    return int(count)


def store_dead_letter(conn: sqlite3.Connection, letter: StoredDeadLetter) -> None:
    """Insert or replace ``letter``."""
    record = letter.record
    conn.execute(
        "INSERT OR REPLACE INTO afterward_dead_letters "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            letter.id,
            letter.group,
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.timestamp,
            record.value,
            pack_headers(record.headers),
            letter.error,
            letter.traceback,
            letter.attempts,
            letter.failed_at.timestamp(),
        ),
    )


def dead_letters(conn: sqlite3.Connection, group: str | None) -> list[StoredDeadLetter]:
    """Every dead letter (of ``group``), oldest first."""
    sql = "SELECT * FROM afterward_dead_letters"
    args: tuple[Any, ...] = ()
    if group is not None:
        sql, args = sql + " WHERE grp = ?", (group,)
    return [_letter(row) for row in conn.execute(sql + " ORDER BY failed_at", args)]


def dead_letter(conn: sqlite3.Connection, letter_id: str) -> StoredDeadLetter | None:
    """The dead letter with that ID."""
    row = conn.execute("SELECT * FROM afterward_dead_letters WHERE id = ?", (letter_id,)).fetchone()
    return None if row is None else _letter(row)


def delete_dead_letter(conn: sqlite3.Connection, letter_id: str) -> bool:
    """Delete the letter; false when there was none."""
    cursor = conn.execute("DELETE FROM afterward_dead_letters WHERE id = ?", (letter_id,))
    return cursor.rowcount == 1


def _letter(row: tuple[Any, ...]) -> StoredDeadLetter:
    id_, group, topic, part, off, key, ts, value, headers, error, tb, attempts, failed_at = row
    return StoredDeadLetter(
        id=id_,
        group=group,
        record=StoredEvent(topic, part, off, value, unpack_headers(headers), key, ts),
        error=error,
        traceback=tb,
        attempts=attempts,
        failed_at=datetime.fromtimestamp(failed_at, UTC),
    )


def prune_state(conn: sqlite3.Connection, before: float, limit: int) -> Pruned:
    """Delete up to ``limit`` processed IDs, key versions and attempts recorded before
    ``before`` (each an index range scan)."""
    counts = []
    for table, key in (
        ("afterward_processed", "grp, id"),
        ("afterward_versions", "grp, topic, key"),
        ("afterward_attempts", "rowid"),
    ):
        cursor = conn.execute(
            f"DELETE FROM {table} WHERE ({key}) IN "
            f"(SELECT {key} FROM {table} WHERE at < ? ORDER BY at LIMIT ?)",
            (before, limit),
        )
        counts.append(cursor.rowcount)
    return Pruned(0, *counts)
