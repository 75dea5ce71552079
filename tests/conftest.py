from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from afterward._stats import reset_stats
from tests.support import require_service


@pytest.fixture(autouse=True)
def _fresh_stats() -> None:
    reset_stats()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of our own on the local PostgreSQL, dropped at the end."""
    require_service("postgres", 5432)
    import psycopg

    name = f"afterward_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 dbname=postgres user=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("host=127.0.0.1 dbname=postgres user=postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis; tests must use keys under their own prefix (see redis_prefix)."""
    require_service("redis", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test (or user) uses."""
    return f"afterward-test-{uuid.uuid4().hex[:10]}:"
