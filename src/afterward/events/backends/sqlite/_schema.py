"""The SQLite backend's tables (created on first connect; ``IF NOT EXISTS`` throughout).

One partition per topic: ``afterward_events`` is keyed by (topic, offset) and holds an
event's fields as columns (its data as JSON in ``value``, its own headers as JSON text
in ``headers``, ``NULL`` when it has none): a read builds the event without parsing
CloudEvents headers. Dead letters keep the record as it was read (value and headers,
see :mod:`afterward.events._wire`), so a foreign or undecodable one is kept as is. Group state
(positions, processed IDs, key versions, claims), dead letters and the flow index
(events and attempts by correlation ID) live beside the events in the same file.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "VERSION"]

#: ``PRAGMA user_version`` of files in this format (1: the envelope format of 0.1; 2:
#: events as columns; 3: processed IDs and key versions carry when they were recorded).
VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS afterward_events (
    topic TEXT NOT NULL, off INTEGER NOT NULL, key TEXT, id TEXT NOT NULL,
    ts REAL NOT NULL, cid TEXT, version INTEGER, headers TEXT, value BLOB NOT NULL,
    PRIMARY KEY (topic, off)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_positions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_processed (
    grp TEXT NOT NULL, id TEXT NOT NULL, topic TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (grp, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS afterward_processed_at ON afterward_processed (at);
CREATE TABLE IF NOT EXISTS afterward_versions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (grp, topic, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS afterward_versions_at ON afterward_versions (at);
CREATE TABLE IF NOT EXISTS afterward_claims (
    grp TEXT NOT NULL, topic TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (grp, topic)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_dead_letters (
    id TEXT PRIMARY KEY, grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    off INTEGER NOT NULL, key BLOB, ts REAL, value BLOB NOT NULL, headers TEXT NOT NULL,
    error TEXT NOT NULL, traceback TEXT NOT NULL, attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS afterward_flow_events (
    cid TEXT NOT NULL, topic TEXT NOT NULL, off INTEGER NOT NULL,
    PRIMARY KEY (cid, topic, off)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_attempts (
    cid TEXT NOT NULL, at REAL NOT NULL, grp TEXT NOT NULL, topic TEXT NOT NULL,
    id TEXT NOT NULL, attempt INTEGER NOT NULL, outcome TEXT NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS afterward_attempts_cid ON afterward_attempts (cid, at);
CREATE INDEX IF NOT EXISTS afterward_attempts_at ON afterward_attempts (at);
CREATE TABLE IF NOT EXISTS afterward_batches (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, start INTEGER NOT NULL,
    stop INTEGER NOT NULL, PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_meta (
    name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_deliveries (
    grp TEXT NOT NULL, id TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (grp, id)) WITHOUT ROWID;
"""
