"""The SQLite log's SQL: events and the flow index, as functions of a connection.

Each function is one primitive; :class:`~._log.SQLiteLog` runs it on the file's thread
(writes inside a transaction). One partition per topic (partition 0).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from afterward.events._envelope import Event
from afterward.events._records import AppendRecord, Attempt, StoredEvent, TopicStorage
from afterward.events._wire import loads

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

__all__ = [
    "add_attempts",
    "append",
    "attempts_for",
    "end_offsets",
    "events_for",
    "first_offsets",
    "offsets_for_time",
    "prune",
    "read",
    "storage",
    "topics",
]


def _last_offset(conn: sqlite3.Connection, topic: str) -> int | None:
    (last,) = conn.execute(
        "SELECT MAX(off) FROM afterward_events WHERE topic = ?", (topic,)
    ).fetchone()
    return None if last is None else int(last)


def _headers_column(event: Event) -> str | None:
    """The event's headers as JSON, its trace context under the names ``traceparent``
    and ``tracestate`` (which an event's own headers may not use)."""
    if event.traceparent is None:
        return _encoder.encode(event.headers) if event.headers else None
    fields = {**event.headers, "traceparent": event.traceparent}
    if event.tracestate:
        fields["tracestate"] = event.tracestate
    return _encoder.encode(fields)


def append(conn: sqlite3.Connection, records: Sequence[AppendRecord]) -> None:
    """Append ``records`` (in a write transaction), indexing their correlation IDs."""
    next_offset: dict[str, int] = {}
    rows = []
    for r in records:
        if r.topic not in next_offset:
            last = _last_offset(conn, r.topic)
            next_offset[r.topic] = -1 if last is None else last
        next_offset[r.topic] += 1
        event = r.event
        headers = _headers_column(event)
        rows.append(
            (
                r.topic,
                next_offset[r.topic],
                r.key,
                event.id,
                r.timestamp,
                event.correlation_id,
                event.version,
                headers,
                r.value,
            )
        )
    conn.executemany("INSERT INTO afterward_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "INSERT OR IGNORE INTO afterward_flow_events VALUES (?, ?, ?)",
        [
            (r.correlation_id, row[0], row[1])
            for r, row in zip(records, rows, strict=True)
            if r.correlation_id is not None
        ],
    )


_COLUMNS = "topic, off, key, id, ts, cid, version, headers, value"


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    """A row as the bus reads it: the event built from its columns (no header parsing)."""
    topic, off, key, id_, ts, cid, version, headers, value = row
    fields: dict[str, str] = json.loads(headers) if headers else {}
    event = Event(
        id=id_,
        topic=topic,
        data=loads(value),
        key=key,
        version=version,
        correlation_id=cid,
        occurred_at=datetime.fromtimestamp(ts, UTC),
        headers=fields,
        traceparent=fields.pop("traceparent", None),
        tracestate=fields.pop("tracestate", None),
    )
    return StoredEvent(topic, 0, off, value, (), key, ts, event)


def read(conn: sqlite3.Connection, topic: str, start: int, limit: int) -> list[StoredEvent]:
    """Up to ``limit`` events of ``topic`` from offset ``start``."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM afterward_events WHERE topic = ? AND off >= ? "
        "ORDER BY off LIMIT ?",
        (topic, start, limit),
    ).fetchall()
    return [_stored(row) for row in rows]


def end_offsets(conn: sqlite3.Connection, topic: str) -> dict[int, int]:
    """``{0: next offset}``, or ``{}`` for a topic with no events."""
    last = _last_offset(conn, topic)
    return {} if last is None else {0: last + 1}


def offsets_for_time(conn: sqlite3.Connection, topic: str, since: datetime) -> dict[int, int]:
    """The first offset with a timestamp >= ``since`` (else the end)."""
    # MIN over the matching rows, not a bisect: timestamps need not ascend with offsets.
    (first,) = conn.execute(
        "SELECT MIN(off) FROM afterward_events WHERE topic = ? AND ts >= ?",
        (topic, since.timestamp()),
    ).fetchone()
    if first is not None:
        return {0: int(first)}
    last = _last_offset(conn, topic)
    return {0: 0 if last is None else last + 1}


def events_for(conn: sqlite3.Connection, correlation_id: str, limit: int) -> list[StoredEvent]:
    """Up to ``limit`` events with that correlation ID, oldest first."""
    columns = ", ".join(f"e.{c.strip()}" for c in _COLUMNS.split(","))
    rows = conn.execute(
        f"SELECT {columns} FROM afterward_flow_events f "
        "JOIN afterward_events e ON e.topic = f.topic AND e.off = f.off "
        "WHERE f.cid = ? ORDER BY e.ts, e.topic, e.off LIMIT ?",
        (correlation_id, limit),
    ).fetchall()
    return [_stored(row) for row in rows]


def add_attempts(conn: sqlite3.Connection, attempts: Sequence[Attempt]) -> None:
    """Record ``attempts`` (in a write transaction)."""
    conn.executemany(
        "INSERT INTO afterward_attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                a.correlation_id,
                a.at.timestamp(),
                a.group,
                a.topic,
                a.event_id,
                a.attempt,
                a.outcome,
                a.error,
            )
            for a in attempts
        ],
    )


def attempts_for(conn: sqlite3.Connection, correlation_id: str, limit: int) -> list[Attempt]:
    """Up to ``limit`` recorded attempts of that correlation ID, oldest first."""
    rows = conn.execute(
        "SELECT cid, at, grp, topic, id, attempt, outcome, error FROM afterward_attempts "
        "WHERE cid = ? ORDER BY at, rowid LIMIT ?",
        (correlation_id, limit),
    ).fetchall()
    return [
        Attempt(cid, grp, topic, id_, attempt, outcome, datetime.fromtimestamp(at, UTC), error)
        for cid, at, grp, topic, id_, attempt, outcome, error in rows
    ]


def topics(conn: sqlite3.Connection) -> list[str]:
    """Every topic with events."""
    return [t for (t,) in conn.execute("SELECT DISTINCT topic FROM afterward_events ORDER BY 1")]


def prune(conn: sqlite3.Connection, topic: str, before: float, limit: int) -> int:
    """Delete up to ``limit`` of the topic's oldest events before ``before`` (the newest
    stays: the next offset follows it) and their flow index rows."""
    last = _last_offset(conn, topic)
    if last is None:
        return 0
    gone = conn.execute(
        "DELETE FROM afterward_events WHERE topic = ? AND off IN (SELECT off FROM "
        "afterward_events WHERE topic = ? AND off < ? AND ts < ? ORDER BY off LIMIT ?) "
        "RETURNING off",
        (topic, topic, last, before, limit),
    ).fetchall()
    if gone:
        conn.execute(
            "DELETE FROM afterward_flow_events WHERE topic = ? AND off <= ? AND off NOT IN "
            "(SELECT off FROM afterward_events WHERE topic = ?)",
            (topic, max(o for (o,) in gone), topic),
        )
    return len(gone)


def first_offsets(conn: sqlite3.Connection, topic: str) -> dict[int, int]:
    """``{0: the oldest offset stored}``, or ``{}``."""
    (first,) = conn.execute(
        "SELECT MIN(off) FROM afterward_events WHERE topic = ?", (topic,)
    ).fetchone()
    return {} if first is None else {0: int(first)}


def storage(conn: sqlite3.Connection) -> dict[str, TopicStorage]:
    """Per topic: events, bytes (values and headers), the oldest time."""
    rows = conn.execute(
        "SELECT topic, COUNT(*), SUM(LENGTH(value) + COALESCE(LENGTH(headers), 0) + "
        "LENGTH(id) + COALESCE(LENGTH(cid), 0) + COALESCE(LENGTH(key), 0)), MIN(ts) "
        "FROM afterward_events GROUP BY topic ORDER BY topic"
    )
    return {
        topic: TopicStorage(count, int(size or 0), datetime.fromtimestamp(oldest, UTC))
        for topic, count, size, oldest in rows
    }
