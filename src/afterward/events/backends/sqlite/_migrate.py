"""Bringing an older SQLite bus file to this format, in place, when it is opened.

Files are versioned with ``PRAGMA user_version`` (:data:`~._schema.VERSION`). Version 1
(afterward 0.1, before CloudEvents) kept each event as one JSON envelope in a
``payload`` column; version 2 keeps its fields as columns and dead letters as records
(value and headers); version 3 adds when each processed ID and key version was
recorded (retention prunes by it). The upgrade runs in one ``BEGIN IMMEDIATE`` transaction, so a
crash leaves the file as it was, and two processes opening it at once upgrade it once.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime

from afterward.events._envelope import Event
from afterward.events._wire import encode, pack_headers
from afterward.events.backends.sqlite._schema import SCHEMA, VERSION

__all__ = ["migrate"]


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _event(envelope: str | bytes) -> Event:
    raw = json.loads(envelope)
    return Event(
        id=raw["id"],
        topic=raw["topic"],
        data=raw["data"],
        key=raw["key"],
        version=raw["version"],
        correlation_id=raw["correlation_id"],
        occurred_at=datetime.fromisoformat(raw["occurred_at"]),
        headers=raw["headers"],
    )


def _upgrade_events(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE afterward_events RENAME TO afterward_events_v1")
    for statement in SCHEMA.split(";"):
        if "afterward_events (" in statement:
            conn.execute(statement)
    rows = conn.execute("SELECT topic, off, key, id, ts, payload FROM afterward_events_v1")
    for topic, off, key, id_, ts, payload in rows.fetchall():
        event = _event(payload)
        headers = json.dumps(event.headers, ensure_ascii=False) if event.headers else None
        value, _ = encode(event, "afterward")
        conn.execute(
            "INSERT INTO afterward_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (topic, off, key, id_, ts, event.correlation_id, event.version, headers, value),
        )
    conn.execute("DROP TABLE afterward_events_v1")


def _upgrade_dead_letters(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE afterward_dead_letters RENAME TO afterward_dead_letters_v1")
    for statement in SCHEMA.split(";"):
        if "afterward_dead_letters (" in statement:
            conn.execute(statement)
    rows = conn.execute(
        "SELECT id, grp, topic, payload, error, traceback, attempts, failed_at "
        "FROM afterward_dead_letters_v1"
    )
    for id_, group, topic, payload, error, tb, attempts, failed_at in rows.fetchall():
        event = _event(payload)
        value, headers = encode(event, "afterward")
        conn.execute(
            "INSERT INTO afterward_dead_letters VALUES (?, ?, ?, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                id_,
                group,
                topic,
                event.key,
                event.occurred_at.timestamp(),
                value,
                pack_headers(headers),
                error,
                tb,
                attempts,
                failed_at,
            ),
        )
    conn.execute("DROP TABLE afterward_dead_letters_v1")


def migrate(conn: sqlite3.Connection) -> None:
    """Upgrade the file behind ``conn`` to :data:`VERSION` if it is older (a new, empty
    file just gets the version)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < VERSION:  # not done meanwhile
            if "payload" in _columns(conn, "afterward_events"):
                _upgrade_events(conn)
            if "payload" in _columns(conn, "afterward_dead_letters"):
                _upgrade_dead_letters(conn)
            for table in ("afterward_processed", "afterward_versions"):
                columns = _columns(conn, table)
                if columns and "at" not in columns:
                    # Recorded "now": kept a whole retention from the upgrade, so no
                    # processed ID goes before the events it is about.
                    conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN at REAL NOT NULL DEFAULT {time.time()!r}"
                    )
            conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
