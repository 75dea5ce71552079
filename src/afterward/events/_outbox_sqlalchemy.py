"""The outbox table on a SQLAlchemy database (any dialect with ``RETURNING``: SQLite >=
3.35, PostgreSQL...). Imported only when an app publishes inside a SQLAlchemy
transaction (``afterward[sqlalchemy]``)."""

from __future__ import annotations

import threading
import weakref
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
from sqlalchemy.ext.asyncio import async_session, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from afterward._exceptions import ConfigError, PublishError
from afterward._loop import run_sync
from afterward.events._outbox_store import OutboxOwner, OutboxStore, outbox_records, outbox_rows
from afterward.events._records import AppendRecord

__all__ = ["SQLAlchemyOutbox", "engine_of", "outbox_table"]

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
        connection.execute(insert(outbox_table), outbox_rows(bus_url, records))

    async def write_async(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        proxy = async_session(owner)
        if proxy is None:
            self.write(owner, bus_url, records)
            return
        connection = await proxy.connection()
        if not self.created:
            await connection.run_sync(lambda c: outbox_table.create(c, checkfirst=True))
        await connection.execute(insert(outbox_table), outbox_rows(bus_url, records))

    def claim(self, bus: OutboxOwner, limit: int) -> int:
        if self.engine.dialect.is_async:
            return run_sync(self._claim_async(bus, limit))
        with self.engine.begin() as connection:
            if not self.created:
                outbox_table.create(connection, checkfirst=True)
            rows = connection.execute(*self._claim_statement(bus.outbox_address, limit)).all()
            if rows:
                run_sync(bus.append_now(outbox_records(rows)))
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

    async def _claim_async(self, bus: OutboxOwner, limit: int) -> int:
        # An async driver's connections belong to the loop that made them: the relay
        # opens its own, on afterward's background loop.
        engine = create_async_engine(self.engine.url, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(lambda c: outbox_table.create(c, checkfirst=True))
                rows = (
                    await connection.execute(*self._claim_statement(bus.outbox_address, limit))
                ).all()
                if rows:
                    await bus.append_now(outbox_records(rows))
        finally:
            await engine.dispose()
        self.created = True
        return len(rows)
