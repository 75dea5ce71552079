"""Retention soak on Redis: storage flat after the first retention period, publish p99
during pruning against a run that keeps everything, same server, same process.

Each run publishes ``EVENTS`` small keyed, versioned events at a steady ``RATE`` (one
awaited ``publish`` each) while ``bus.run()`` consumes them in one group on the same
event loop. The pruned run keeps events ``RETENTION`` seconds, so ``run()``'s pruner
trims every tenth of it (streams, processed IDs, key versions); the other keeps
everything. Every 10% of the run the table shows the stream's length, Redis's
``used_memory``, the group's processed-ID count and the publish p99 of that tenth. A
private redis-server (free port, no persistence) serves both runs, flushed between
them (it is this benchmark's own).

The issue's soak is 2 million events with a 1-minute retention; scaled down here to
what a shared 2-core machine runs in a minute, the process running for real.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from bench._table import table
from bench.bench_redis import _redis_server

__all__ = ["run"]

EVENTS = 60_000
RATE = 2_000  # events/s
RETENTION = timedelta(seconds=3)
PREFIX = "soak:"

Sample = tuple[int, int, int, int, float]


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def _soak(url: str, retention: timedelta | None) -> list[Sample]:
    """One run: per tenth (percent done, stream length, used memory, processed IDs,
    publish p99 ms)."""
    from redis.asyncio import Redis

    from afterward.events import Event, EventBus

    raw = Redis.from_url(url)
    await raw.flushdb()  # the benchmark's private server
    bus = EventBus(f"{url}?prefix={PREFIX}", retention=retention)
    await bus.connect()

    @bus.subscribe("orders", group="billing")
    async def handle(event: Event) -> None:
        return None

    consuming = asyncio.create_task(bus.run())
    samples: list[Sample] = []
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        for n in range(EVENTS):
            due = started + n / RATE
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            sent = time.perf_counter()
            await bus.publish("orders", {"n": n}, key=f"k{n % 1000}", version=n + 1)
            latencies.append(time.perf_counter() - sent)
            if (n + 1) % (EVENTS // 10) == 0:
                info: Any = await raw.info("memory")
                length = int(await raw.xlen(f"{PREFIX}stream:orders"))
                done = int(await raw.hlen(f"{PREFIX}done:billing"))
                percent = (n + 1) * 100 // EVENTS
                samples.append((percent, length, int(info["used_memory"]), done, _p99(latencies)))
                latencies = []
    finally:
        bus.stop()
        await consuming
        await bus.aclose()
        await raw.aclose()
    return samples


async def _both(url: str) -> tuple[list[Sample], list[Sample]]:
    kept = await _soak(url, None)
    pruned = await _soak(url, RETENTION)
    return kept, pruned


def run() -> str:
    with _redis_server() as url:
        kept, pruned = asyncio.run(_both(url))
    rows = [
        (
            f"{k[0]}%",
            f"{k[1]:,}",
            f"{p[1]:,}",
            f"{k[2] / 1e6:.1f}",
            f"{p[2] / 1e6:.1f}",
            f"{k[3]:,}",
            f"{p[3]:,}",
            f"{k[4]:.2f}",
            f"{p[4]:.2f}",
        )
        for k, p in zip(kept, pruned, strict=True)
    ]
    seconds = RETENTION.total_seconds()
    return table(
        f"Redis soak: {EVENTS:,} events at {RATE:,}/s, consumed as published, kept forever "
        f"against a {seconds:.0f} s retention (pruned by run() every {seconds / 10:.1f} s)",
        [
            "Done",
            "Stream (kept)",
            "Stream (pruned)",
            "used_memory MB (kept)",
            "(pruned)",
            "Processed IDs (kept)",
            "(pruned)",
            "Publish p99 ms (kept)",
            "(pruned)",
        ],
        rows,
    )
