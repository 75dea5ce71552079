"""Redis Streams: afterward's Redis backend against a raw redis-py loop, same server, same run.

50,000 small JSON events on a redis-server this benchmark starts (free port, no
persistence), so the shared server on 6379 is never touched; each measurement runs
``ROUNDS`` times, the contenders alternating so both see the same machine load, and the
median counts:

1. Publish: one awaited XADD per event (what ``await bus.publish`` does per call).
2. Consume with acknowledgements: XREADGROUP batches of 500, each entry decoded, then
   XACK, from a pre-filled stream (afterward: its Redis consumer group, batches of 500).
3. End to end: from the first publish to the last event handled, together.

Raw redis-py is the floor (ratio = row / raw, higher is better); afterward's rows run
with its guarantees on (processed-ID store, per-key order, dead letters).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bench._bus_consume import consume_rate
from bench._table import table

__all__ = ["run"]

EVENTS = 50_000
ROUNDS = 3

Measure = Callable[[str, str], Awaitable[float]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _redis_server() -> Iterator[str]:
    """A private redis-server on a free port; yields its ``redis://`` URL."""
    from tests.support import port_open, wait_for

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=15)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(15)


def _payload(n: int) -> str:
    return json.dumps({"order_id": n, "total": 10.5, "currency": "EUR"})


async def _raw_fill(url: str, stream: str) -> float:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        started = time.perf_counter()
        for n in range(EVENTS):
            await client.xadd(stream, {"key": f"key-{n % 1000}", "data": _payload(n)})
        return time.perf_counter() - started
    finally:
        await client.aclose()


async def raw_publish(url: str, stream: str) -> float:
    """Events/s of awaited XADDs."""
    return EVENTS / await _raw_fill(url, stream)


async def _raw_consume_all(url: str, stream: str, expected: int) -> float:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    group = "raw"
    try:
        with contextlib.suppress(Exception):  # BUSYGROUP: the group exists already
            await client.xgroup_create(stream, group, id="0", mkstream=True)
        started = time.perf_counter()
        seen = 0
        while seen < expected:
            reply = await client.xreadgroup(group, "c1", {stream: ">"}, count=500, block=500)
            for _, entries in reply or []:
                for _entry_id, fields in entries:
                    json.loads(fields[b"data"])
                seen += len(entries)
                await client.xack(stream, group, *[entry_id for entry_id, _ in entries])
        return time.perf_counter() - started
    finally:
        await client.aclose()


async def raw_consume(url: str, stream: str) -> float:
    """Events/s of an XREADGROUP + XACK loop over a pre-filled stream."""
    await _raw_fill(url, stream)
    return EVENTS / await _raw_consume_all(url, stream, EVENTS)


async def raw_end_to_end(url: str, stream: str) -> float:
    """Events/s from first XADD to last XACK, producer and consumer together."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.xgroup_create(stream, "raw", id="0", mkstream=True)
    await client.aclose()
    started = time.perf_counter()
    consumer = asyncio.create_task(_raw_consume_all(url, stream, EVENTS))
    await _raw_fill(url, stream)
    await consumer
    return EVENTS / (time.perf_counter() - started)


async def _afterward_fill(bus: Any, topic: str, concurrent: bool) -> float:
    started = time.perf_counter()
    if concurrent:  # only to fill the topic fast for the consume measurement
        for start in range(0, EVENTS, 1000):
            await asyncio.gather(
                *(
                    bus.publish(topic, {"n": n}, key=f"key-{n % 1000}")
                    for n in range(start, start + 1000)
                )
            )
    else:
        for n in range(EVENTS):
            await bus.publish(topic, {"order_id": n, "total": 10.5}, key=f"key-{n % 1000}")
    return time.perf_counter() - started


async def afterward_publish(url: str, stream: str) -> float:
    """Events/s of awaited ``bus.publish`` calls."""
    from afterward import EventBus

    async with EventBus(f"{url}?prefix={stream}:") as bus:
        return EVENTS / await _afterward_fill(bus, "orders", concurrent=False)


async def _afterward_consume(url: str, stream: str, together: bool) -> float:
    from afterward import EventBus

    async with EventBus(f"{url}?prefix={stream}:", batch_size=500) as bus:
        return await consume_rate(
            bus,
            "orders",
            EVENTS,
            None if together else (lambda: _afterward_fill(bus, "orders", concurrent=True)),
            (lambda: _afterward_fill(bus, "orders", concurrent=False)) if together else None,
        )


async def afterward_consume(url: str, stream: str) -> float:
    """Events/s handled by an afterward group (processed IDs, atomic commits)."""
    return await _afterward_consume(url, stream, together=False)


async def afterward_end_to_end(url: str, stream: str) -> float:
    """Events/s from first ``publish`` to last handled, afterward on both sides."""
    return await _afterward_consume(url, stream, together=True)


def _contenders() -> dict[str, dict[str, Measure]]:
    return {
        "raw redis-py": {
            "publish": raw_publish,
            "consume + ack": raw_consume,
            "end to end": raw_end_to_end,
        },
        "afterward": {
            "publish": afterward_publish,
            "consume + ack": afterward_consume,
            "end to end": afterward_end_to_end,
        },
    }


def run() -> str:
    """Start a private redis-server, measure every contender, return the Markdown table."""
    rows: list[list[object]] = []
    with _redis_server() as url:
        contenders = _contenders()
        for measurement in contenders["raw redis-py"]:
            rates: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(ROUNDS):
                for name, measures in contenders.items():
                    stream = f"bench-{uuid.uuid4().hex[:8]}"
                    rates[name].append(asyncio.run(measures[measurement](url, stream)))
            floor = statistics.median(rates["raw redis-py"])
            for name, samples in rates.items():
                rate = statistics.median(samples)
                rows.append([measurement, name, round(rate), f"{rate / floor:.2f}"])
    return table(
        f"Redis Streams: {EVENTS:,} events, events/s (median of {ROUNDS}, interleaved)",
        ["measurement", "contender", "events/s", "ratio to raw"],
        rows,
    )
