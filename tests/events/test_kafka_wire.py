"""Kafka records on the wire with a client that is not afterward's (confluent-kafka, the
librdkafka client other languages share): what it reads of afterward's records, and what
afterward makes of the records it writes (API.md section 5, "On the wire", "Foreign
records", "Poison records")."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from afterward.events import Event, EventBus
from tests.events.kafka_broker import shared_broker
from tests.events.wire_cases import (
    DATA,
    FOREIGN_CLOUDEVENT,
    check_attributes,
    check_foreign,
    publish_full,
)

pytestmark = pytest.mark.kafka

#: drain() must return: a hang fails the test instead of the run.
DRAIN_DEADLINE = 30.0


def _bus_url(tmp_path: Path, prefix: str) -> str:
    store = quote(f"sqlite:///{tmp_path / 'state.db'}", safe="")
    return f"{shared_broker().url}&partitions=1&prefix={prefix}&store={store}"


#: A record confluent-kafka writes: key, value, headers.
Record = tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]


def _produce(topic: str, records: list[Record]) -> None:
    producer = Producer({"bootstrap.servers": shared_broker().bootstrap})
    for key, value, headers in records:
        producer.produce(topic, value=value, key=key, headers=headers)
    assert producer.flush(10) == 0, "confluent-kafka did not deliver every record"


def _consume(topic: str, count: int, timeout: float = 20.0) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": shared_broker().bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",  # required; assigned, not joined
            "enable.auto.commit": False,
        }
    )
    found: list[Message] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    assert len(found) == count, f"read {len(found)} of {count} records"
    return found


async def test_records_from_confluent_kafka_are_events_and_garbage_is_one_dead_letter(
    tmp_path: Path,
) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}."
    seen: list[Event] = []
    async with EventBus(_bus_url(tmp_path, prefix)) as bus:

        @bus.subscribe("order.completed", group="billing", retries=0)
        async def handle(event: Event) -> None:
            seen.append(event)

        first = await bus.publish("order.completed", {"n": 1}, key="k")
        await asyncio.to_thread(
            _produce,
            prefix + "order.completed",
            [
                (b"order-5", json.dumps({"order_id": 5}).encode(), []),
                (b"order-7", json.dumps({"order_id": 7}).encode(), list(FOREIGN_CLOUDEVENT)),
                (None, b"\x00\xffnot json at all", [("x-from", b"a-bad-producer")]),
            ],
        )
        last = await bus.publish("order.completed", {"n": 2}, key="k")
        async with asyncio.timeout(DRAIN_DEADLINE):
            await bus.drain()

        # Per-key order: afterward's two events (key "k") in order, the others each once.
        by_id = {e.id: e for e in seen}
        assert len(seen) == len(by_id) == 4
        assert [e.id for e in seen if e.key == "k"] == [first.id, last.id]
        plain, cloud = by_id["order.completed:0:1"], by_id["java-42"]
        assert (plain.data, cloud.data) == ({"order_id": 5}, {"order_id": 7})
        assert plain.key == "order-5"  # its ID says where it sits: stable across redeliveries
        await check_foreign(bus, seen)


async def test_confluent_kafka_reads_every_attribute_of_afterward_s_records(
    tmp_path: Path,
) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}."
    async with EventBus(_bus_url(tmp_path, prefix), source="shop") as bus:
        event = await publish_full(bus)
    [message] = await asyncio.to_thread(_consume, prefix + "order.completed", 1)
    assert message.key() == b"order-7"
    value = message.value()
    assert value is not None and json.loads(value) == DATA
    pairs: list[tuple[str, bytes]] = list(message.headers() or [])  # type: ignore[arg-type]
    check_attributes(event, {name: raw.decode() for name, raw in pairs})


async def test_a_librdkafka_producer_with_murmur2_puts_a_key_where_afterward_does(
    tmp_path: Path,
) -> None:
    # Per-key order across producers needs one partition per key: librdkafka's default
    # partitioner (CRC32) differs from Java's and afterward's (murmur2); docs/wire.md
    # tells other services to set partitioner=murmur2_random.
    prefix = f"w{uuid.uuid4().hex[:8]}."
    keys = [f"order-{n}" for n in range(12)]
    store = quote(f"sqlite:///{tmp_path / 'state.db'}", safe="")
    async with EventBus(f"{shared_broker().url}&partitions=8&prefix={prefix}&store={store}") as bus:
        for key in keys:
            await bus.publish("t", 1, key=key)
        ours = {s.key: s.partition for s in await bus._core.backend.log.read("t", {}, 100)}
    theirs: dict[str, int] = {}

    def delivered(error: object, message: Message) -> None:
        key = message.key()
        assert error is None and key is not None
        theirs[key.decode()] = message.partition() or 0

    producer = Producer(
        {"bootstrap.servers": shared_broker().bootstrap, "partitioner": "murmur2_random"}
    )
    for key in keys:
        producer.produce(prefix + "t", value=b"1", key=key.encode(), on_delivery=delivered)
    assert await asyncio.to_thread(producer.flush, 10) == 0
    assert theirs == ours and len(set(ours.values())) > 1
