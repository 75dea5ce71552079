"""A fresh SQLAlchemy engine on a SQLite file or PostgreSQL, for the outbox and inbox tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

__all__ = ["fresh_engine"]


def fresh_engine(
    request: pytest.FixtureRequest, tmp_path: Path, drop: tuple[str, ...], create: str
) -> Iterator[Engine]:
    """Yield an engine (``request.param``: ``"sqlite"`` or ``"postgres"``) with the
    ``drop`` tables gone and the table ``create`` (``name (columns)``) made anew."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    name = create.split(" ", 1)[0]
    with engine.begin() as conn:
        for table in (*drop, name):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(text(f"CREATE TABLE {create}"))
    yield engine
    engine.dispose()
