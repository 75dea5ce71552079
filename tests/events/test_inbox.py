"""The transactional inbox on SQLite and PostgreSQL (the kill -9 test is in test_sqlite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from afterward.events import Event, EventBus
from tests.events._sql import fresh_engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from fresh_engine(
        request, tmp_path, drop=("afterward_inbox",), create="effects (n INTEGER)"
    )


def _effects(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [n for (n,) in conn.execute(text("SELECT n FROM effects ORDER BY n"))]


@pytest.mark.parametrize("handler_kind", ["sync", "async"])
async def test_inbox_commits_effect_and_id_together(engine: Engine, handler_kind: str) -> None:
    bus = EventBus("memory://")
    sessions = sessionmaker(engine)

    def effect(event: Event) -> None:
        assert isinstance(event.session, Session)
        event.session.execute(text("INSERT INTO effects VALUES (:n)"), {"n": event.data})
        if event.data == 2 and event.attempt == 1:
            raise RuntimeError("rolls back the effect and the ID")

    if handler_kind == "sync":
        bus.subscribe("t", group="g", inbox=sessions, backoff=0)(effect)
    else:

        async def async_effect(event: Event) -> None:
            effect(event)

        bus.subscribe("t", group="g", inbox=engine, backoff=0)(async_effect)

    for n in range(4):
        await bus.publish("t", n, id=f"e{n}")
    await bus.drain()
    assert _effects(engine) == [0, 1, 2, 3]
    # Replayed with reprocess (the bus forgot the IDs): the inbox still knows them.
    await bus.replay("t", group="g", from_offset=0, reprocess=True)
    await bus.drain()
    assert _effects(engine) == [0, 1, 2, 3]


async def test_inbox_with_an_async_engine(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effects (n INTEGER)"))
    bus = EventBus("memory://")

    @bus.subscribe("t", group="g", inbox=engine)
    async def handle(event: Event) -> None:
        await event.session.execute(text("INSERT INTO effects VALUES (:n)"), {"n": event.data})

    await bus.publish("t", 1, id="one")
    await bus.publish("t", 1, id="one")
    await bus.drain()
    await bus.replay("t", group="g", from_offset=0, reprocess=True)
    await bus.drain()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT COUNT(*) FROM effects"))).scalar_one() == 1
    await engine.dispose()


async def test_inbox_with_an_async_callable_object_commits_its_effect(engine: Engine) -> None:
    bus = EventBus("memory://")

    class Handler:
        async def __call__(self, event: Event) -> None:
            event.session.execute(text("INSERT INTO effects VALUES (:n)"), {"n": event.data})

    bus.subscribe("t", group="g", inbox=sessionmaker(engine))(Handler())
    await bus.publish("t", 1, id="e1")
    await bus.drain()
    assert _effects(engine) == [1]  # in the transaction that recorded the ID


async def test_inbox_handler_returning_an_awaitable_records_nothing(engine: Engine) -> None:
    bus = EventBus("memory://")

    async def later(event: Event) -> None:
        event.session.execute(text("INSERT INTO effects VALUES (:n)"), {"n": event.data})

    bus.subscribe("t", group="g", inbox=engine, retries=0)(lambda event: later(event))
    await bus.publish("t", 1, id="e1")
    await bus.drain()
    [letter] = await bus.dead_letters_async()
    assert "returned an awaitable" in letter.error
    assert _effects(engine) == []
    with engine.connect() as conn:  # the ID was rolled back with the effect
        assert conn.execute(text("SELECT COUNT(*) FROM afterward_inbox")).scalar_one() == 0
