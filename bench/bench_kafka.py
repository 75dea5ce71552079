"""Kafka: afterward's Kafka backend against raw aiokafka and FastStream, same broker, same run.

Three measurements of 100,000 small JSON events on a tansu broker this benchmark starts
(memory storage, 127.0.0.1, 4 partitions):

1. Produce throughput: events/s until every send is acknowledged.
2. Consume throughput with commits: events/s for one consumer group reading everything,
   committing offsets after each batch it handled.
3. End to end: from the first publish to the last event handled, producer and consumer
   running together.

Raw aiokafka is the floor every other row is compared with (ratio = row / raw, higher is
better). afterward's rows run with its guarantees on (processed-ID store, per-key order,
dead letters); FastStream runs with its defaults plus manual commits.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench._bus_consume import consume_rate
from bench._table import table

__all__ = ["run"]

EVENTS = 100_000
PARTITIONS = 4
#: Rounds per measurement (raw and afterward interleaved); the table shows medians.
ROUNDS = 3

Measure = Callable[[str, str], Awaitable[float]]


def _payload(n: int) -> bytes:
    return json.dumps({"order_id": n, "total": 10.5, "currency": "EUR"}).encode()


async def _create_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def _raw_fill(bootstrap: str, topic: str) -> float:
    """Produce EVENTS with raw aiokafka; returns the seconds it took."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, _payload(n), key=f"key-{n % 1000}".encode())
            for n in range(EVENTS)
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def raw_produce(bootstrap: str, topic: str) -> float:
    """Events/s produced by raw aiokafka."""
    return EVENTS / await _raw_fill(bootstrap, topic)


async def _raw_consume_all(bootstrap: str, topic: str, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await consumer.start()  # returns once the group is joined
    try:
        started = time.perf_counter()
        seen = 0
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for messages in batches.values():
                for message in messages:
                    json.loads(message.value)  # a handler would at least decode it
                seen += len(messages)
            if batches:
                await consumer.commit(
                    {tp: messages[-1].offset + 1 for tp, messages in batches.items()}
                )
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def raw_consume(bootstrap: str, topic: str) -> float:
    """Events/s consumed (with commits) by raw aiokafka from a pre-filled topic."""
    await _raw_fill(bootstrap, topic)
    return EVENTS / await _raw_consume_all(bootstrap, topic, EVENTS)


async def raw_end_to_end(bootstrap: str, topic: str) -> float:
    """Events/s from first publish to last handled, raw aiokafka."""
    started = time.perf_counter()
    consumer = asyncio.create_task(_raw_consume_all(bootstrap, topic, EVENTS))
    await _raw_fill(bootstrap, topic)
    await consumer
    return EVENTS / (time.perf_counter() - started)


async def _faststream_fill(broker: Any, topic: str) -> float:
    started = time.perf_counter()
    futures = [
        await broker.publish(_payload(n), topic, key=f"key-{n % 1000}".encode(), no_confirm=True)
        for n in range(EVENTS)
    ]
    await asyncio.gather(*futures)
    return time.perf_counter() - started


async def faststream_produce(bootstrap: str, topic: str) -> float:
    """Events/s published by FastStream (confirmations gathered, not awaited one by one)."""
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(bootstrap, acks="all", linger_ms=5, logger=None)
    await broker.start()
    try:
        return EVENTS / await _faststream_fill(broker, topic)
    finally:
        await broker.stop()


async def _faststream_consume(bootstrap: str, topic: str, fill: bool) -> float:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(bootstrap, acks="all", linger_ms=5, logger=None)
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(
        topic,
        group_id=f"faststream-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    async def handle(body: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen == EVENTS:
            done.set()

    if not fill:
        await _raw_fill(bootstrap, topic)
    await broker.start()
    try:
        started = time.perf_counter()
        if fill:
            await _faststream_fill(broker, topic)
        await done.wait()
        return EVENTS / (time.perf_counter() - started)
    finally:
        await broker.stop()


async def faststream_consume(bootstrap: str, topic: str) -> float:
    """Events/s a FastStream subscriber handles (commit after each message) from a full topic."""
    return await _faststream_consume(bootstrap, topic, fill=False)


async def faststream_end_to_end(bootstrap: str, topic: str) -> float:
    """Events/s from first publish to last handled, FastStream publisher and subscriber."""
    return await _faststream_consume(bootstrap, topic, fill=True)


def _afterward_url(bootstrap: str, topic: str) -> str:
    import tempfile
    from urllib.parse import quote

    store = quote(f"sqlite:///{tempfile.mkdtemp(prefix='afterward-bench-')}/state.db", safe="")
    # The same session timeout as the raw consumer: tansu's join then waits the same.
    return f"kafka://{bootstrap}?partitions={PARTITIONS}&session_timeout_ms=2000&store={store}"


async def _afterward_fill(bus: Any, topic: str) -> float:
    started = time.perf_counter()
    for start in range(0, EVENTS, 1000):
        await asyncio.gather(
            *(
                bus.publish(topic, {"order_id": n, "total": 10.5}, key=f"key-{n % 1000}")
                for n in range(start, start + 1000)
            )
        )
    return time.perf_counter() - started


async def afterward_produce_many(bootstrap: str, topic: str) -> float:
    """Events/s of ``bus.publish_many`` (1,000 events per call, one call at a time)."""
    from afterward import EventBus

    async with EventBus(_afterward_url(bootstrap, topic)) as bus:
        started = time.perf_counter()
        for start in range(0, EVENTS, 1000):
            await bus.publish_many(
                topic,
                (
                    {"data": {"order_id": n, "total": 10.5}, "key": f"key-{n % 1000}"}
                    for n in range(start, start + 1000)
                ),
            )
        return EVENTS / (time.perf_counter() - started)


async def afterward_produce(bootstrap: str, topic: str) -> float:
    """Events/s of ``bus.publish`` (1,000 concurrent publishes at a time)."""
    from afterward import EventBus

    async with EventBus(_afterward_url(bootstrap, topic)) as bus:
        return EVENTS / await _afterward_fill(bus, topic)


async def _afterward_consume(
    bootstrap: str, topic: str, together: bool, batch: bool = False
) -> float:
    from afterward import EventBus

    async with EventBus(_afterward_url(bootstrap, topic), batch_size=2000) as bus:

        def fill() -> Awaitable[float]:
            return _afterward_fill(bus, topic)

        return await consume_rate(
            bus,
            topic,
            EVENTS,
            None if together else fill,
            fill if together else None,
            batch=batch,
        )


async def afterward_consume(bootstrap: str, topic: str) -> float:
    """Events/s handled by an afterward group (processed IDs, commits) from a full topic."""
    return await _afterward_consume(bootstrap, topic, together=False)


async def afterward_consume_batches(bootstrap: str, topic: str) -> float:
    """The same with a batch handler (``subscribe(..., batch=True)``)."""
    return await _afterward_consume(bootstrap, topic, together=False, batch=True)


async def afterward_end_to_end(bootstrap: str, topic: str) -> float:
    """Events/s from first ``publish`` to last handled, afterward on both sides."""
    return await _afterward_consume(bootstrap, topic, together=True)


def _rows(bootstrap: str, contenders: dict[str, dict[str, Measure]]) -> list[list[object]]:
    """One row per (measurement, contender), the median of ``ROUNDS`` interleaved rounds;
    a contender's variants of a measurement (``"produce (publish_many)"``) come right
    after it, compared with the same raw row."""
    rows: list[list[object]] = []
    for measurement in contenders["raw aiokafka"]:
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(ROUNDS):
            for name, measures in contenders.items():
                for label, measure in measures.items():
                    if label != measurement and not label.startswith(f"{measurement} ("):
                        continue
                    topic = f"bench-{uuid.uuid4().hex[:8]}"
                    asyncio.run(_create_topic(bootstrap, topic))
                    rate = asyncio.run(measure(bootstrap, topic))
                    rates.setdefault((label, name), []).append(rate)
        floor = statistics.median(rates[(measurement, "raw aiokafka")])
        for (label, name), found in rates.items():
            rate = statistics.median(found)
            rows.append([label, name, round(rate), f"{rate / floor:.2f}"])
    return rows


def _contenders() -> dict[str, dict[str, Measure]]:
    contenders: dict[str, dict[str, Measure]] = {
        "raw aiokafka": {
            "produce": raw_produce,
            "consume + commit": raw_consume,
            "end to end": raw_end_to_end,
        }
    }
    contenders["afterward"] = {
        "produce": afterward_produce,
        "produce (publish_many)": afterward_produce_many,
        "consume + commit": afterward_consume,
        "consume + commit (batch handler)": afterward_consume_batches,
        "end to end": afterward_end_to_end,
    }
    try:
        import faststream.kafka  # noqa: F401
    except ImportError:
        pass  # FastStream is optional for this benchmark: `pip install 'faststream[kafka]'`
    else:
        contenders["FastStream"] = {
            "produce": faststream_produce,
            "consume + commit": faststream_consume,
            "end to end": faststream_end_to_end,
        }
    return contenders


def run() -> str:
    """Start tansu, measure every contender, return the Markdown table."""
    from tests.events.kafka_broker import running_tansu

    with running_tansu() as broker:
        rows = _rows(broker.bootstrap, _contenders())
    return table(
        f"Kafka: {EVENTS:,} events on tansu (4 partitions), events/s "
        f"(median of {ROUNDS} interleaved rounds)",
        ["measurement", "contender", "events/s", "ratio to raw"],
        rows,
    )
