"""The transactional inbox on SQLite and PostgreSQL (the kill -9 test is in test_sqlite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from afterward.events import Event, EventBus


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS afterward_inbox"))
        conn.execute(text("DROP TABLE IF EXISTS effects"))
        conn.execute(text("CREATE TABLE effects (n INTEGER)"))
    yield engine
    engine.dispose()


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
