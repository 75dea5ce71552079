"""Outbox tables on the user's database: SQLAlchemy (any dialect with ``RETURNING``:
SQLite >= 3.35, PostgreSQL...) and Django (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

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
from sqlalchemy.ext.asyncio import async_session, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from afterward._exceptions import ConfigError, PublishError
from afterward._loop import run_sync
from afterward.events._backend import AppendRecord
from afterward.events._outbox import OutboxStore

if TYPE_CHECKING:
    from afterward.events._bus import EventBus

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
    """The (sync) engine behind a Session, a (async_)sessionmaker or an (Async)Engine."""
    bind: Any = target
    if isinstance(target, Session):
        bind = target.get_bind()
    elif isinstance(getattr(target, "kw", None), dict):  # sessionmaker, async_sessionmaker
        bind = target.kw.get("bind")
    bind = getattr(bind, "sync_engine", bind)  # an AsyncEngine
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
        AppendRecord(
            topic, key, event_id, ts, payload.encode(), json.loads(payload)["correlation_id"]
        )
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
        """The one store of the engine behind ``target`` (see :func:`engine_of`)."""
        engine = engine_of(target)
        with cls._lock:
            store = cls._stores.get(engine)
            if store is None:
                store = cls._stores[engine] = cls(engine)
            return store

    def write(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        if async_session(owner) is not None:
            raise PublishError(
                "an AsyncSession transaction is open: publish with `await bus.publish(...)` "
                "so the event can join it"
            )
        connection = owner.connection()  # the session's connection, in its transaction
        if not self.created:
            # In the user's transaction: if it rolls back, so does the table; it is
            # marked created only once a relay (after a commit) has seen it.
            outbox_table.create(connection, checkfirst=True)
        connection.execute(insert(outbox_table), _rows(bus_url, records))

    async def write_async(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        proxy = async_session(owner)
        if proxy is None:
            self.write(owner, bus_url, records)
            return
        connection = await proxy.connection()
        if not self.created:
            await connection.run_sync(lambda c: outbox_table.create(c, checkfirst=True))
        await connection.execute(insert(outbox_table), _rows(bus_url, records))

    def claim(self, bus: EventBus, limit: int) -> int:
        if self.engine.dialect.is_async:
            return run_sync(self._claim_async(bus, limit))
        with self.engine.begin() as connection:
            if not self.created:
                outbox_table.create(connection, checkfirst=True)
            rows = connection.execute(*self._claim_statement(bus._outbox_address, limit)).all()
            if rows:
                run_sync(bus._append(_records(rows), outbox=False))
        self.created = True
        return len(rows)

    def _claim_statement(self, bus_url: str, limit: int) -> tuple[Any]:
        t = outbox_table
        ids = select(t.c.id).where(t.c.bus == bus_url).order_by(t.c.id).limit(limit)
        return (
            delete(t)
            .where(t.c.id.in_(ids.scalar_subquery()))
            .returning(t.c.id, t.c.topic, t.c.key, t.c.event_id, t.c.ts, t.c.payload),
        )

    async def _claim_async(self, bus: EventBus, limit: int) -> int:
        # An async driver's connections belong to the loop that made them: the relay
        # opens its own, on afterward's background loop.
        engine = create_async_engine(self.engine.url, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(lambda c: outbox_table.create(c, checkfirst=True))
                rows = (
                    await connection.execute(*self._claim_statement(bus._outbox_address, limit))
                ).all()
                if rows:
                    await bus._append(_records(rows), outbox=False)
        finally:
            await engine.dispose()
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

    def claim(self, bus: EventBus, limit: int) -> int:
        from django.db import connections, transaction

        connection = connections[self.alias]
        try:
            with transaction.atomic(using=self.alias), connection.cursor() as cursor:
                self._create(cursor, connection.vendor)
                cursor.execute(
                    "DELETE FROM afterward_outbox WHERE id IN (SELECT id FROM afterward_outbox "
                    "WHERE bus = %s ORDER BY id LIMIT %s) "
                    "RETURNING id, topic, key, event_id, ts, payload",
                    [bus._outbox_address, limit],
                )
                rows = cursor.fetchall()
                if rows:
                    run_sync(bus._append(_records(rows), outbox=False))
        finally:
            if not connection.in_atomic_block:
                connection.close()  # a relay thread's own connection: do not leak it
        return len(rows)
