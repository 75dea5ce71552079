from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from afterward.events import EventBus
from tests.events.backends import BACKENDS
from tests.events.distributed import REDIS

if TYPE_CHECKING:
    from redis.asyncio import Redis


@pytest.fixture(params=[factory for _, factory in BACKENDS], ids=[name for name, _ in BACKENDS])
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A bus URL private to the test, for every backend of the conformance suite."""
    url: str = request.param(tmp_path)
    return url


#: Backends where one consumer per (group, topic) holds a claim. Not Kafka: its broker
#: assigns partitions to the members of a group (tests/events/test_faults_kafka.py runs
#: two members and kills one).
CLAIMING = [(name, factory) for name, factory in BACKENDS if name != "kafka"]


@pytest.fixture(params=[factory for _, factory in CLAIMING], ids=[name for name, _ in CLAIMING])
def claiming_bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Like ``bus_url``, for the backends whose consumers take claims."""
    url: str = request.param(tmp_path)
    return url


#: Backends whose log deletes events past the retention when pruned. Not Kafka: its
#: broker deletes by the topics' ``retention.ms`` (tests/events/test_retention.py checks
#: the setting: tansu deletes nothing by time, and panics on ``DeleteRecords``).
PRUNING = [(name, factory) for name, factory in BACKENDS if name != "kafka"]


@pytest.fixture(params=[factory for _, factory in PRUNING], ids=[name for name, _ in PRUNING])
def pruning_bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Like ``bus_url``, for the backends whose log prunes its events itself."""
    url: str = request.param(tmp_path)
    return url


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[EventBus]:
    """A connected bus on ``bus_url``, closed after the test."""
    async with EventBus(bus_url) as connected:
        yield connected


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    """A plain redis-py client on the shared server (only the test's prefix is touched)."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS)
    try:
        yield client
    finally:
        await client.aclose()
