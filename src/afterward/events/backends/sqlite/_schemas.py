"""The SQLite schema registry's SQL: one ``afterward_schemas`` row per topic version."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from afterward.events._records import StoredSchema

__all__ = ["SCHEMAS_SCHEMA", "add_schema", "schemas"]

SCHEMAS_SCHEMA = """
CREATE TABLE IF NOT EXISTS afterward_schemas (
    topic TEXT NOT NULL, version INTEGER NOT NULL, schema TEXT NOT NULL,
    compatibility TEXT NOT NULL, registered_at REAL NOT NULL,
    PRIMARY KEY (topic, version)) WITHOUT ROWID;
"""


def schemas(conn: sqlite3.Connection, topic: str | None) -> list[StoredSchema]:
    """Every version (of ``topic``), by topic then version."""
    where, args = (" WHERE topic = ?", (topic,)) if topic is not None else ("", ())
    rows = conn.execute(
        "SELECT topic, version, schema, compatibility, registered_at FROM afterward_schemas"
        f"{where} ORDER BY topic, version",
        args,
    )
    return [
        StoredSchema(name, version, text, mode, datetime.fromtimestamp(at, UTC))
        for name, version, text, mode, at in rows
    ]


def add_schema(conn: sqlite3.Connection, schema: StoredSchema) -> bool:
    """Insert ``schema`` if it is its topic's next version (in the caller's write)."""
    (latest,) = conn.execute(
        "SELECT COALESCE(MAX(version), 0) FROM afterward_schemas WHERE topic = ?", (schema.topic,)
    ).fetchone()
    if schema.version != latest + 1:
        return False
    conn.execute(
        "INSERT INTO afterward_schemas VALUES (?, ?, ?, ?, ?)",
        (
            schema.topic,
            schema.version,
            schema.schema,
            schema.compatibility,
            schema.registered_at.timestamp(),
        ),
    )
    return True
