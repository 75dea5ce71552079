"""The transactional inbox: ``@bus.subscribe(..., inbox=engine_or_sessionmaker)``.

The handler runs inside a transaction on the user's SQLAlchemy database, exposed as
``event.session``. The event's ID is inserted into ``afterward_inbox`` in that same
transaction before the handler runs, and the transaction commits when the handler
returns: a crash anywhere leaves the handler's database effects exactly once, because a
redelivered event finds its ID already there and is skipped.

Sync handlers run in a thread with a sync ``Session``. Async handlers get an
``AsyncSession`` when ``inbox`` is an ``AsyncEngine``/``async_sessionmaker``; given a sync
engine, an async handler's session is a sync ``Session`` used on the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from afterward._stats import incr
from afterward.events._envelope import Event
from afterward.events._subscription import Handler, Subscription

__all__ = ["inbox_table", "run_in_inbox"]

_metadata = MetaData()
inbox_table = Table(
    "afterward_inbox",
    _metadata,
    Column("grp", String(249), primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)
# Engines whose inbox table is known to exist.
_created: weakref.WeakSet[Any] = weakref.WeakSet()


def _sync_factory(inbox: Any) -> sessionmaker[Session]:
    if isinstance(inbox, sessionmaker):
        return inbox
    return sessionmaker(bind=inbox)


def _claim_sync(session: Session, group: str, event_id: str) -> bool:
    """Record the ID in the session's transaction; false when it was already there."""
    t = inbox_table
    found = session.execute(
        select(t.c.event_id).where(t.c.grp == group, t.c.event_id == event_id)
    ).first()
    if found is not None:
        return False
    session.execute(t.insert().values(grp=group, event_id=event_id, processed_at=datetime.now(UTC)))
    return True


def _ensure_table_sync(factory: sessionmaker[Session]) -> None:
    bind = factory.kw.get("bind")
    if bind is not None and bind not in _created:
        inbox_table.create(bind, checkfirst=True)
        _created.add(bind)


def _is_async(handler: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - the method itself
    )


@contextmanager
def _claimed(sub: Subscription, event: Event) -> Iterator[Session | None]:
    """A transaction on the inbox database with ``event.id`` claimed for the group, or
    ``None`` (the ID was already processed: nothing to run)."""
    factory = _sync_factory(sub.inbox)
    _ensure_table_sync(factory)
    with factory() as session, session.begin():
        if not _claim_sync(session, sub.group, event.id):
            incr("events.duplicate", labels=(sub.group, sub.topic))
            yield None
            return
        yield session


def _run_sync(sub: Subscription, event: Event) -> None:
    with _claimed(sub, event) as session:
        if session is None:
            return
        result = _handler(sub)(replace(event, session=session))
        if inspect.isawaitable(result):
            # Awaited after this transaction commits, its effects would miss it while
            # the ID is recorded: refuse, so the transaction rolls back.
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"inbox handler {sub.handler!r} returned an awaitable: make it an "
                "`async def` (or a plain function that does its work itself)"
            )


async def _run_async(sub: Subscription, event: Event) -> None:
    inbox = sub.inbox
    factory = inbox if isinstance(inbox, async_sessionmaker) else async_sessionmaker(inbox)
    bind = factory.kw.get("bind")
    if bind is not None and bind not in _created:
        async with bind.begin() as conn:
            await conn.run_sync(lambda c: inbox_table.create(c, checkfirst=True))
        _created.add(bind)
    async with factory() as session, session.begin():
        claimed = await session.run_sync(lambda s: _claim_sync(s, sub.group, event.id))
        if not claimed:
            incr("events.duplicate", labels=(sub.group, sub.topic))
            return
        result = _handler(sub)(replace(event, session=session))
        if inspect.isawaitable(result):
            await result


async def run_in_inbox(sub: Subscription, event: Event) -> None:
    """Run ``sub``'s handler for ``event`` in an inbox transaction (see module doc)."""
    if isinstance(sub.inbox, AsyncEngine | async_sessionmaker):
        await _run_async(sub, event)
    elif _is_async(sub.handler):
        with _claimed(sub, event) as session:
            if session is None:
                return
            result = _handler(sub)(replace(event, session=session))
            if inspect.isawaitable(result):
                await result
    else:
        await asyncio.to_thread(_run_sync, sub, event)


def _handler(sub: Subscription) -> Handler:
    # A batch handler cannot use an inbox (refused at subscribe): this one takes an Event.
    return cast("Handler", sub.handler)
