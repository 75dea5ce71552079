"""Retention on Kafka: topics get ``retention.ms`` at creation and keep it in step with
the bus (read back with DescribeConfigs), and the state store is pruned, SQLite or Redis.

The broker deletes the events itself; tansu, the test broker, keeps ``retention.ms``
but deletes nothing by time (and ``DeleteRecords`` is not implemented there), so what
is checked is the setting, not the deletion.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from afterward.events import Event, EventBus
from afterward.events.backends.kafka._admin import retention_ms
from tests.events.distributed import kafka_bus_url, redis_bus_url
from tests.events.kafka_broker import shared_broker

pytestmark = pytest.mark.kafka


@pytest.fixture
async def admin() -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=shared_broker().bootstrap)
    await client.start()
    yield client
    await client.close()


async def _retention_ms(admin: AIOKafkaAdminClient, url: str, topic: str) -> str | None:
    """The Kafka topic's ``retention.ms`` as the broker describes it."""
    prefix = parse_qs(urlsplit(url).query)["prefix"][0]
    [response] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, prefix + topic)]
    )
    [resource] = response.resources
    entries = {entry[0]: entry[1] for entry in resource[4]}
    return entries.get("retention.ms")


def test_retention_ms_of_a_retention() -> None:
    assert retention_ms(3600.0) == "3600000"
    assert retention_ms(0.0001) == "1"  # never 0: Kafka would delete everything at once
    assert retention_ms(None) == "-1"  # Kafka's "keep everything"


async def test_topics_are_created_with_their_retention_and_kept_in_step(
    tmp_path: Path, admin: AIOKafkaAdminClient
) -> None:
    url = kafka_bus_url(tmp_path)
    async with EventBus(url, retention=timedelta(hours=1)) as bus:
        bus.retention("short", timedelta(minutes=1))
        await bus.publish("t", "a")
        await bus.publish("short", "b")
        assert await _retention_ms(admin, url, "t") == "3600000"
        assert await _retention_ms(admin, url, "short") == "60000"
        bus.retention("t", timedelta(hours=2))
        bus.retention("short", None)
        bus.retention("unborn", timedelta(hours=3))  # no topic yet: nothing to set
        assert (await bus.prune()).events == 0  # the broker deletes, the bus does not
        assert await _retention_ms(admin, url, "t") == "7200000"
        assert await _retention_ms(admin, url, "short") == "-1"
        await bus.publish("unborn", "c")
        assert await _retention_ms(admin, url, "unborn") == "10800000"
    # Another process, started with another retention, sets it on what it consumes.
    async with EventBus(url, retention=timedelta(minutes=30)) as other:

        @other.subscribe("t", group="g")
        async def handle(event: Event) -> None: ...

        await other.prune()
        assert await _retention_ms(admin, url, "t") == "1800000"
        assert await _retention_ms(admin, url, "short") == "-1"  # not its topic


async def test_a_redis_state_store_is_pruned_with_the_retention(tmp_path: Path) -> None:
    sqlite_store = kafka_bus_url(tmp_path)
    url = sqlite_store.split("&store=")[0] + "&store=" + quote(redis_bus_url(tmp_path), safe="")
    async with EventBus(url, retention=timedelta(milliseconds=50)) as bus:
        seen: list[str] = []

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.id)

        sent = [await bus.publish("t", n, key="k", version=n + 1) for n in range(3)]
        await bus.drain()
        assert seen == [e.id for e in sent]
        state = bus._core.backend.state
        assert await state.processed("g", seen) == set(seen)
        await asyncio.sleep(0.1)  # past the 50 ms retention
        pruned = await bus.prune()
        assert (pruned.processed, pruned.versions) == (3, 1)
        assert await state.processed("g", seen) == set()
        assert await state.key_versions("g", "t", ["k"]) == {}
        assert await bus.prune() == type(pruned)()
