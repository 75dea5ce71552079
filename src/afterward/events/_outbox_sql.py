"""Outbox tables on the user's database: SQLAlchemy (any dialect with ``RETURNING``:
SQLite >= 3.35, PostgreSQL...) and Django (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from afterward._exceptions import ConfigError
from afterward.events._backend import AppendRecord
from afterward.events._outbox import OutboxStore

__all__ = ["DjangoOutbox", "SQLAlchemyOutbox", "engine_of"]

_metadata = MetaData()
outbox_table = Table(
    "afterward_outbox",
    _metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("bus", String(500), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("key", Text),
    Column("event_id", String(255), nullable=False),
    Column("ts", Float, nullable=False),
    Column("payload", Text, nullable=False),
)


def engine_of(target: Any) -> Engine:
    """The engine behind a Session, a sessionmaker or an Engine."""
    if isinstance(target, Engine):
        return target
    bind: Any
    if isinstance(target, Session):
        bind = target.get_bind()
    elif isinstance(target, sessionmaker):
        bind = target.kw.get("bind")
    else:
        bind = getattr(target, "sync_engine", None)  # an AsyncEngine
    if isinstance(bind, Engine):
        return bind
    raise ConfigError(f"expected a SQLAlchemy Engine, Session or sessionmaker, got {target!r}")


def _rows(bus_url: str, records: list[AppendRecord]) -> list[dict[str, Any]]:
    return [
        {
            "bus": bus_url,
            "topic": r.topic,
            "key": r.key,
            "event_id": r.event_id,
            "ts": r.timestamp,
            "payload": r.payload.decode(),
        }
        for r in records
    ]


def _records(rows: Sequence[Any]) -> list[AppendRecord]:
    return [
        AppendRecord(topic, key, event_id, ts, payload.encode())
        for _, topic, key, event_id, ts, payload in sorted(rows)
    ]


class SQLAlchemyOutbox(OutboxStore):
    """The outbox table in a SQLAlchemy engine's database."""

    _stores: ClassVar[weakref.WeakKeyDictionary[Engine, SQLAlchemyOutbox]] = (
        weakref.WeakKeyDictionary()
    )
    _lock = threading.Lock()

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ident = engine
        self.created = False

    @classmethod
    def of(cls, target: Any) -> SQLAlchemyOutbox:
        engine = engine_of(target)
        with cls._lock:
            store = cls._stores.get(engine)
            if store is None:
                store = cls._stores[engine] = cls(engine)
            return store

    def write(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        connection = owner.connection()  # the session's connection, in its transaction
        if not self.created:
            # In the user's transaction: if it rolls back, so does the table; it is
            # marked created only once a relay (after a commit) has seen it.
            outbox_table.create(connection, checkfirst=True)
        connection.execute(insert(outbox_table), _rows(bus_url, records))

    def claim(self, bus_url: str, limit: int, send: Callable[[list[AppendRecord]], None]) -> int:
        t = outbox_table
        with self.engine.begin() as connection:
            if not self.created:
                t.create(connection, checkfirst=True)
            ids = select(t.c.id).where(t.c.bus == bus_url).order_by(t.c.id).limit(limit)
            rows = connection.execute(
                delete(t)
                .where(t.c.id.in_(ids.scalar_subquery()))
                .returning(t.c.id, t.c.topic, t.c.key, t.c.event_id, t.c.ts, t.c.payload)
            ).all()
            if rows:
                send(_records(rows))
        self.created = True
        return len(rows)


_DJANGO_DDL = {
    "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "id BIGSERIAL PRIMARY KEY",
}


class DjangoOutbox(OutboxStore):
    """The outbox table in a Django database (by alias)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.ident = ("django", alias)

    def _create(self, cursor: Any, vendor: str) -> None:
        if vendor not in _DJANGO_DDL:
            raise ConfigError(f"the outbox supports SQLite and PostgreSQL, not {vendor!r}")
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS afterward_outbox ({_DJANGO_DDL[vendor]}, "
            "bus VARCHAR(500) NOT NULL, topic VARCHAR(249) NOT NULL, key TEXT, "
            "event_id VARCHAR(255) NOT NULL, ts DOUBLE PRECISION NOT NULL, "
            "payload TEXT NOT NULL)"
        )

    def write(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        from django.db import connections

        connection = connections[self.alias]
        with connection.cursor() as cursor:
            self._create(cursor, connection.vendor)
            cursor.executemany(
                "INSERT INTO afterward_outbox (bus, topic, key, event_id, ts, payload) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [tuple(row.values()) for row in _rows(bus_url, records)],
            )

    def claim(self, bus_url: str, limit: int, send: Callable[[list[AppendRecord]], None]) -> int:
        from django.db import connections, transaction

        connection = connections[self.alias]
        try:
            with transaction.atomic(using=self.alias), connection.cursor() as cursor:
                self._create(cursor, connection.vendor)
                cursor.execute(
                    "DELETE FROM afterward_outbox WHERE id IN (SELECT id FROM afterward_outbox "
                    "WHERE bus = %s ORDER BY id LIMIT %s) "
                    "RETURNING id, topic, key, event_id, ts, payload",
                    [bus_url, limit],
                )
                rows = cursor.fetchall()
                if rows:
                    send(_records(rows))
        finally:
            if not connection.in_atomic_block:
                connection.close()  # a relay thread's own connection: do not leak it
        return len(rows)
