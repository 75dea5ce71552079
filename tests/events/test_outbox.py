"""The transactional outbox: SQLAlchemy on a SQLite file and on PostgreSQL, and Django."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from afterward import PublishError
from afterward.events import Event, EventBus
from afterward.integrations import sqlalchemy as afterward_sqla
from tests.events._sql import fresh_engine
from tests.support import wait_for

afterward_sqla.install()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from fresh_engine(
        request, tmp_path, drop=("afterward_outbox",), create="orders (id INTEGER PRIMARY KEY)"
    )


def _outbox_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM afterward_outbox")).scalar_one())


async def test_publish_in_a_transaction_is_relayed_after_commit(
    engine: Engine, tmp_path: Path
) -> None:
    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}")
    Sessions = sessionmaker(engine)
    with Sessions() as session, session.begin():
        session.execute(text("INSERT INTO orders VALUES (1)"))
        await bus.publish("order.completed", {"order_id": 1}, key="order-1")
        bus.publish_sync("order.completed", {"order_id": 1.5})
        # Inside the transaction: in the outbox, not on the bus.
        assert await bus.event_count("order.completed") == 0
    # Committed: relayed promptly by this process, without anyone calling anything.
    wait_for(lambda: bus.event_count_sync("order.completed") == 2, timeout=1.0)
    assert _outbox_rows(engine) == 0
    assert await bus.relay_outbox() == 0  # relayed exactly once


async def test_rolled_back_publish_never_exists(engine: Engine, tmp_path: Path) -> None:
    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}")
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        await bus.publish("order.completed", {"order_id": 2})
        raise RuntimeError("payment declined")
    with Session(engine) as session, session.begin():  # a later commit wakes the relay
        bus.publish_sync("order.completed", {"order_id": 3})
    wait_for(lambda: bus.event_count_sync("order.completed") == 1, timeout=1.0)
    seen: list[int] = []

    @bus.subscribe("order.completed", group="g")
    async def handle(event: Event) -> None:
        seen.append(event.data["order_id"])

    await bus.drain()
    assert seen == [3]
    await bus.aclose()


async def test_leftovers_are_relayed_at_next_start(engine: Engine, tmp_path: Path) -> None:
    bus_url = f"sqlite:///{tmp_path / 'bus.db'}"
    # A process commits and dies before its relay runs.
    code = f"""
import os
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from afterward.events import EventBus
from afterward.integrations import sqlalchemy as afterward_sqla
afterward_sqla.install()
bus = EventBus({bus_url!r})
engine = create_engine({engine.url.render_as_string(hide_password=False)!r})
with Session(engine) as session:
    with session.begin():
        for n in range(3):
            bus.publish_sync("t", n, id=f"e{{n}}")
        import afterward.events._outbox as o
        o._relayer.wake = lambda bus, store: None  # the relay never gets to run
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd(), timeout=30)
    assert _outbox_rows(engine) == 3
    bus = EventBus(bus_url)
    seen: list[int] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        seen.append(event.data)

    assert await bus.relay_outbox(engine) == 3
    await bus.drain()
    assert seen == [0, 1, 2]
    assert _outbox_rows(engine) == 0
    await bus.aclose()


def test_django_atomic_outbox(tmp_path: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")
    import django

    django.setup()
    from django.db import transaction

    from afterward.integrations import django as afterward_django

    afterward_django.install()
    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}")
    with pytest.raises(RuntimeError), transaction.atomic():
        bus.publish_sync("t", "rolled back")
        raise RuntimeError
    with transaction.atomic():
        bus.publish_sync("t", "committed")
        assert bus.event_count_sync("t") == 0
    wait_for(lambda: bus.event_count_sync("t") == 1, timeout=1.0)
    seen: list[str] = []

    @bus.subscribe("t", group="g")
    def handle(event: Event) -> None:
        seen.append(event.data)

    bus.drain_sync()
    assert seen == ["committed"]


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_async_session_outbox(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    if db == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_url").replace("+psycopg", "+asyncpg")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS afterward_outbox"))
    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}")
    async with AsyncSession(engine) as session, session.begin():
        await bus.publish("t", "committed", id="a1")
        with pytest.raises(PublishError, match=r"await bus\.publish"):
            bus.publish_sync("t", "sync twin cannot join an AsyncSession")
        assert await bus.event_count("t") == 0
    with pytest.raises(RuntimeError):
        async with AsyncSession(engine) as session, session.begin():
            await bus.publish("t", "rolled back")
            raise RuntimeError
    wait_for(lambda: bus.event_count_sync("t") == 1, timeout=1.0)  # relayed after commit
    await engine.dispose()


async def test_queue_jobs_dispatched_in_a_transaction_follow_it(
    engine: Engine, tmp_path: Path
) -> None:
    from afterward.jobs import unregister_connection
    from tests.events.jobs_app import record

    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}")
    bus.use_for_jobs("default")
    try:
        with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
            record.dispatch("nowhere.db", "rolled back", connection="queue")
            raise RuntimeError
        with Session(engine) as session, session.begin():
            record.dispatch("nowhere.db", "committed", connection="queue")
            assert bus.queue_stats_sync() == {}
        wait_for(lambda: bus.queue_stats_sync().get("default") is not None, timeout=1.0)
        (depth,) = bus.queue_stats_sync().values()
        assert depth.ready == 1  # the committed one; the rolled-back one never existed
    finally:
        unregister_connection("queue")


async def test_private_memory_buses_never_relay_each_others_outbox(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import afterward.events._outbox as outbox

    mine, other = EventBus("memory://"), EventBus("memory://")
    # Committed, not relayed yet (as if the relay thread had not got to it).
    monkeypatch.setattr(outbox._relayer, "wake", lambda bus, store: None)
    with Session(engine) as session, session.begin():
        await mine.publish("t", "mine")
    assert await other.relay_outbox(engine) == 0  # same URL, another private store
    assert await other.event_count("t") == 0
    assert await mine.relay_outbox(engine) == 1
    assert await mine.event_count("t") == 1
