"""What only the Kafka backend has: several partitions, Kafka-side offsets and the
dead-letter topic, URL options. The shared guarantees are in test_conformance.py."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from afterward import ConfigError
from afterward.events import Event, EventBus
from tests.events.kafka_broker import shared_broker

pytestmark = pytest.mark.kafka


def _url(tmp_path: Path, prefix: str, partitions: int = 4) -> str:
    store = quote(f"sqlite:///{tmp_path / 'state.db'}", safe="")
    return f"{shared_broker().url}&partitions={partitions}&prefix={prefix}&store={store}"


async def test_per_key_order_and_lag_over_several_partitions(tmp_path: Path) -> None:
    prefix = f"{tmp_path.name[:20]}."
    async with EventBus(_url(tmp_path, prefix)) as bus:
        seen: dict[str, list[int]] = {}

        @bus.subscribe("orders", group="billing")
        async def handle(event: Event) -> None:
            seen.setdefault(event.key or "", []).append(event.data)

        for n in range(40):
            await bus.publish("orders", n, key=f"k{n % 8}")
        assert await bus.event_count("orders") == 40
        assert (await bus.lag())["billing"]["orders"] == 40
        await bus.drain()
        assert (await bus.lag())["billing"]["orders"] == 0
        assert {k: v for k, v in seen.items()} == {f"k{k}": list(range(k, 40, 8)) for k in range(8)}
        positions = await bus._core.backend.state.positions("billing", "orders")
        assert positions is not None and sum(positions.values()) == 40
    # The same offsets are committed to the Kafka consumer group, for Kafka's own tools.
    assert await _kafka_committed(prefix + "orders", prefix + "billing") == positions


async def _kafka_committed(topic: str, group: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=shared_broker().bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        found = {p: await consumer.committed(TopicPartition(topic, p)) for p in range(4)}
    finally:
        await consumer.stop()
    return {p: offset for p, offset in found.items() if offset}


async def test_a_retried_keyless_publish_lands_on_the_same_partition(tmp_path: Path) -> None:
    async with EventBus(_url(tmp_path, f"{tmp_path.name[:20]}.")) as bus:
        runs: list[str] = []

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            runs.append(event.id)

        for _ in range(3):
            await bus.publish("t", {"n": 1}, id="same-id")
        ends = await bus._core.backend.log.end_offsets("t")
        assert sorted(ends.values()) == [0, 0, 0, 3]
        await bus.drain()
        assert runs == ["same-id"]


async def test_dead_letters_are_mirrored_to_a_topic(tmp_path: Path) -> None:
    prefix = f"{tmp_path.name[:20]}."
    async with EventBus(_url(tmp_path, prefix, partitions=1)) as bus:

        @bus.subscribe("t", group="g", retries=0)
        async def handle(event: Event) -> None:
            raise RuntimeError("boom")

        await bus.publish("t", 1)
        await bus.drain()
        [letter] = await bus.dead_letters_async("g")
        await bus.discard_dead_letter(letter.id)
        # The letter, then its tombstone, on <topic>.dlq.<group>.
        assert await bus.event_count("t.dlq.g") == 2


@pytest.mark.parametrize(
    "url",
    [
        "kafka://",
        "kafka://127.0.0.1:9092?unknown=1",
        "kafka://127.0.0.1:9092?partitions=many",
        "kafka://127.0.0.1:9092?store=kafka://127.0.0.1:9093",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        EventBus(url)


async def test_concurrent_publishes_are_batched_and_all_land(tmp_path: Path) -> None:
    """Concurrent publishes share produce rounds; 300 events of 1 KB overflow one record
    batch (64 KiB), so a round is split, and every event still lands exactly once."""
    import asyncio

    prefix = f"{tmp_path.name[:20]}."
    async with EventBus(_url(tmp_path, prefix)) as bus:
        seen: list[int] = []

        @bus.subscribe("big", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data["n"])

        await asyncio.gather(
            *(bus.publish("big", {"n": n, "pad": "x" * 1024}, key=f"k{n % 3}") for n in range(300))
        )
        assert await bus.event_count("big") == 300
        await bus.drain()
        assert sorted(seen) == list(range(300))
        assert (await bus.lag())["g"]["big"] == 0
