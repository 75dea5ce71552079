"""Retention soak on Redis and SQLite: storage flat after the first retention period,
publish p99 during pruning against a run that keeps everything, same process.

Each run publishes small keyed, versioned events at a steady rate (one awaited
``publish`` each) while ``bus.run()`` consumes them in one group on the same event
loop. The pruned run keeps events ``RETENTION`` seconds, so ``run()``'s pruner trims
every tenth of it (events, processed IDs, key versions, history); the other keeps
everything. Every 10% of the run the table shows what is stored (Redis: the stream's
length, ``used_memory``; SQLite: the events table, the file with its WAL), the group's
processed-ID count, this process's RSS and the publish p99 of that tenth. Redis runs on
a private redis-server (free port, no persistence), flushed between runs (it is this
benchmark's own); SQLite on a fresh file per run.

The issue's soak is 2 million events with a 1-minute retention; scaled down by default
to what a shared 2-core machine runs in a few minutes, the process running for real:
``BENCH_SOAK_EVENTS`` / ``BENCH_SOAK_RATE`` / ``BENCH_SOAK_RETENTION`` (seconds) set the
SQLite run's size (``BENCH_SOAK_EVENTS=2000000 BENCH_SOAK_RATE=5000
BENCH_SOAK_RETENTION=60`` is the issue's, about 7 minutes a run).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._table import percentile_ms, table
from bench.bench_redis import _redis_server

__all__ = ["run"]

EVENTS = 60_000
RATE = 2_000  # events/s
RETENTION = timedelta(seconds=3)
SQLITE_EVENTS = int(os.environ.get("BENCH_SOAK_EVENTS", "300000"))
SQLITE_RATE = int(os.environ.get("BENCH_SOAK_RATE", "5000"))
SQLITE_RETENTION = timedelta(seconds=float(os.environ.get("BENCH_SOAK_RETENTION", "6")))
PREFIX = "soak:"

#: (percent done, events stored, storage bytes, processed IDs, RSS bytes, publish p99 ms)
Sample = tuple[int, int, int, int, int, float]
#: What a backend has stored now: (events, bytes, processed IDs).
Probe = Callable[[], Awaitable[tuple[int, int, int]]]


def _rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) * 1024


async def _soak(
    url: str, retention: timedelta | None, probe: Probe, events: int, rate: int
) -> list[Sample]:
    """One run: a :data:`Sample` per tenth."""
    from afterward.events import Event, EventBus

    bus = EventBus(url, retention=retention)
    await bus.connect()

    @bus.subscribe("orders", group="billing")
    async def handle(event: Event) -> None:
        return None

    consuming = asyncio.create_task(bus.run())
    samples: list[Sample] = []
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        for n in range(events):
            due = started + n / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            sent = time.perf_counter()
            await bus.publish("orders", {"n": n}, key=f"k{n % 1000}", version=n + 1)
            latencies.append(time.perf_counter() - sent)
            if (n + 1) % (events // 10) == 0:
                stored, size, done = await probe()
                percent = (n + 1) * 100 // events
                p99 = percentile_ms(latencies, 0.99)
                samples.append((percent, stored, size, done, _rss(), p99))
                latencies = []
    finally:
        bus.stop()
        await consuming
        await bus.aclose()
    return samples


async def _redis_runs(url: str) -> tuple[list[Sample], list[Sample]]:
    from redis.asyncio import Redis

    raw = Redis.from_url(url)

    async def probe() -> tuple[int, int, int]:
        info: Any = await raw.info("memory")
        length = int(await raw.xlen(f"{PREFIX}stream:orders"))
        done = int(await raw.hlen(f"{PREFIX}done:billing"))
        return length, int(info["used_memory"]), done

    runs = []
    try:
        for retention in (None, RETENTION):
            await raw.flushdb()  # the benchmark's private server
            runs.append(await _soak(f"{url}?prefix={PREFIX}", retention, probe, EVENTS, RATE))
    finally:
        await raw.aclose()
    return runs[0], runs[1]


async def _sqlite_runs(tmp: Path) -> tuple[list[Sample], list[Sample]]:
    runs = []
    for n, retention in enumerate((None, SQLITE_RETENTION)):
        path = tmp / f"soak-{n}.db"

        async def probe(path: Path = path) -> tuple[int, int, int]:
            with sqlite3.connect(path, timeout=30) as conn:
                (stored,) = conn.execute("SELECT COUNT(*) FROM afterward_events").fetchone()
                (done,) = conn.execute("SELECT COUNT(*) FROM afterward_processed").fetchone()
            wal = path.with_name(path.name + "-wal")
            size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
            return int(stored), size, int(done)

        url = f"sqlite:///{path}"
        runs.append(await _soak(url, retention, probe, SQLITE_EVENTS, SQLITE_RATE))
    return runs[0], runs[1]


def _table(title: str, stored: str, kept: list[Sample], pruned: list[Sample]) -> str:
    rows = [
        (
            f"{k[0]}%",
            f"{k[1]:,}",
            f"{p[1]:,}",
            f"{k[2] / 1e6:.1f}",
            f"{p[2] / 1e6:.1f}",
            f"{k[3]:,}",
            f"{p[3]:,}",
            f"{k[4] / 1e6:.0f}",
            f"{p[4] / 1e6:.0f}",
            f"{k[5]:.2f}",
            f"{p[5]:.2f}",
        )
        for k, p in zip(kept, pruned, strict=True)
    ]
    header = [
        "Done",
        f"{stored} (kept)",
        "(pruned)",
        "MB (kept)",
        "(pruned)",
        "Processed IDs (kept)",
        "(pruned)",
        "RSS MB (kept)",
        "(pruned)",
        "Publish p99 ms (kept)",
        "(pruned)",
    ]
    return table(title, header, rows)


def run() -> str:
    """Soak Redis, then SQLite; return both tables."""
    with _redis_server() as url:
        kept, pruned = asyncio.run(_redis_runs(url))
    seconds = RETENTION.total_seconds()
    redis = _table(
        f"Redis soak: {EVENTS:,} events at {RATE:,}/s, consumed as published, kept forever "
        f"against a {seconds:.0f} s retention (pruned by run() every {seconds / 10:.1f} s; "
        "MB: used_memory)",
        "Stream",
        kept,
        pruned,
    )
    with tempfile.TemporaryDirectory(prefix="afterward-soak-") as tmp:
        kept, pruned = asyncio.run(_sqlite_runs(Path(tmp)))
    seconds = SQLITE_RETENTION.total_seconds()
    sqlite = _table(
        f"SQLite soak: {SQLITE_EVENTS:,} events at {SQLITE_RATE:,}/s, consumed as published, "
        f"kept forever against a {seconds:g} s retention (pruned by run() every "
        f"{seconds / 10:g} s; MB: the file and its WAL)",
        "Events",
        kept,
        pruned,
    )
    return redis + "\n" + sqlite
