"""Transaction-aware defer with SQLAlchemy, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

import afterward
from afterward import defer, scope
from afterward.integrations import sqlalchemy as afterward_sqla

afterward_sqla.install()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sync_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(sync_url: str) -> Iterator[object]:
    engine = create_engine(sync_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)"))
    yield engine
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE orders"))
    engine.dispose()


def test_install_is_idempotent() -> None:
    afterward_sqla.install()
    afterward_sqla.install()
    ran: list[str] = []
    with scope():
        with Session(create_engine("sqlite://")) as session, session.begin():
            defer(ran.append, "once")
    assert ran == ["once"]


def test_commit_runs_and_rollback_drops(engine: object) -> None:
    ran: list[str] = []
    with scope():
        with Session(engine) as session:  # type: ignore[call-overload]
            with session.begin():
                session.execute(text("INSERT INTO orders (id) VALUES (1)"))
                defer(ran.append, "committed order")
                assert ran == []
            with session.begin():
                session.execute(text("INSERT INTO orders (id) VALUES (2)"))
                defer(ran.append, "rolled back order")
                defer(ran.append, "opted out", after_commit=False)
                session.rollback()
        defer(ran.append, "no transaction")
    assert ran == ["committed order", "opted out", "no transaction"]
    assert afterward.stats()["defer.rolled_back"] == 1


def test_forget_reaches_a_callback_waiting_for_its_transaction(engine: object) -> None:
    ran: list[str] = []
    with scope():
        with Session(engine) as session, session.begin():  # type: ignore[call-overload]
            defer(ran.append, "receipt", name="receipt")
            defer(ran.append, "kept", name="kept")
            assert afterward.forget("receipt") is True
            assert afterward.forget("receipt") is False
    assert ran == ["kept"]


def test_savepoints(engine: object) -> None:
    ran: list[str] = []
    with scope(), Session(engine) as session, session.begin():  # type: ignore[call-overload]
        defer(ran.append, "outer")
        with session.begin_nested():
            defer(ran.append, "released savepoint")
        savepoint = session.begin_nested()
        defer(ran.append, "rolled back savepoint")
        savepoint.rollback()
        assert ran == []
    assert ran == ["outer", "released savepoint"]


def test_autobegin_session_commit(engine: object) -> None:
    ran: list[str] = []
    with scope():
        session = Session(engine)  # type: ignore[call-overload]
        session.execute(text("INSERT INTO orders (id) VALUES (3)"))  # autobegins
        defer(ran.append, "after autobegin commit")
        assert ran == []
        session.commit()
        session.close()
        assert ran == []  # joined the scope; runs when the scope ends
    assert ran == ["after autobegin commit"]


def test_a_transaction_that_ends_after_the_scope_ran_still_runs_its_callback(
    engine: object,
) -> None:
    ran: list[str] = []
    session = Session(engine)  # type: ignore[call-overload]
    with scope() as s:
        session.begin()
        defer(ran.append, "late")
    assert ran == []
    session.commit()
    session.close()
    assert afterward.drain_sync(5)
    assert ran == ["late"] and s.callbacks[0].state == "done"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def async_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url  # psycopg 3 drives both sync and async engines


async def test_async_session(async_url: str) -> None:
    engine = create_async_engine(async_url)
    sessions = async_sessionmaker(engine, class_=AsyncSession)
    ran: list[str] = []
    async with scope():
        async with sessions() as session:
            async with session.begin():
                await session.execute(text("SELECT 1"))
                defer(ran.append, "async committed")
            async with session.begin():
                defer(ran.append, "async rolled back")
                await session.rollback()
            async with session.begin():
                async with session.begin_nested():
                    defer(ran.append, "async savepoint")
        assert ran == []
    await engine.dispose()
    assert ran == ["async committed", "async savepoint"]
