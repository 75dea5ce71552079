"""Event bus benchmarks (SQLite backend): publish, end to end, latency, memory.

Every table compares with a peer measured in the same run:

- publish: raw ``sqlite3`` inserts of the same bytes with the same settings (WAL,
  ``synchronous=NORMAL``), one transaction per event / per batch;
- end to end: the same bus code on ``memory://`` (what the storage costs);
- latency: the same on ``memory://``, and a consumer in another process (it polls);
- memory: an idle consumer process (imports and an open bus), the baseline RSS.

The durable-jobs table (afterward's queue on this bus against Celery, Dramatiq, RQ,
arq, SAQ, huey and Procrastinate) is ``python -m bench jobs``.

``BENCH_EVENTS_QUICK=1`` shrinks every size by 10x (for a smoke run).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from afterward.events import Event, EventBus
from bench._table import table

__all__ = ["run"]

QUICK = os.environ.get("BENCH_EVENTS_QUICK") == "1"
SCALE = 10 if QUICK else 1
SINGLE = 5_000 // SCALE
BATCHED = 100_000 // SCALE
E2E = 100_000 // SCALE
BACKLOG = 1_000_000 // SCALE
RATE, SECONDS = 1_000, 3.0 / SCALE
PAYLOAD = {"order_id": 12345, "total": 99.5, "currency": "EUR"}


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="afterward-bench-"))


# -- publish ------------------------------------------------------------------------


async def _publish_rates(url: str) -> tuple[float, float]:
    async with EventBus(url) as bus:
        start = time.perf_counter()
        for n in range(SINGLE):
            await bus.publish("orders", PAYLOAD, key=f"k{n % 100}")
        single = SINGLE / (time.perf_counter() - start)
        start = time.perf_counter()
        for base in range(0, BATCHED, 1000):
            await bus.publish_many(
                "orders",
                [{"data": PAYLOAD, "key": f"k{n % 100}"} for n in range(base, base + 1000)],
            )
        batched = BATCHED / (time.perf_counter() - start)
    return single, batched


def _raw_sqlite_rates(path: Path) -> tuple[float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, key TEXT, payload BLOB)")
    payload = b'{"id":"0f8b...","topic":"orders","data":{"order_id":12345}}' * 2
    start = time.perf_counter()
    for n in range(SINGLE):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (key, payload) VALUES (?, ?)", (f"k{n % 100}", payload))
        conn.execute("COMMIT")
    single = SINGLE / (time.perf_counter() - start)
    start = time.perf_counter()
    for base in range(0, BATCHED, 1000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t (key, payload) VALUES (?, ?)",
            [(f"k{n % 100}", payload) for n in range(base, base + 1000)],
        )
        conn.execute("COMMIT")
    batched = BATCHED / (time.perf_counter() - start)
    conn.close()
    return single, batched


# -- end to end -----------------------------------------------------------------------


async def _end_to_end(url: str) -> float:
    """Publish E2E keyed, versioned events while a consumer runs; events/s to the last."""
    bus = EventBus(url, batch_size=1000)
    done = asyncio.Event()
    handled = 0

    @bus.subscribe("orders", group="billing")
    async def handle(event: Event) -> None:
        nonlocal handled
        handled += 1
        if handled == E2E:
            done.set()

    async with bus:
        consumer = asyncio.create_task(bus.run())
        start = time.perf_counter()
        for base in range(0, E2E, 1000):
            await bus.publish_many(
                "orders",
                [
                    {"data": PAYLOAD, "key": f"k{n % 1000}", "version": n, "id": f"e{n}"}
                    for n in range(base, base + 1000)
                ],
            )
        await done.wait()
        elapsed = time.perf_counter() - start
        bus.stop()
        await consumer
    return E2E / elapsed


# -- latency --------------------------------------------------------------------------


async def _latency(url: str) -> tuple[float, float]:
    """p50/p99 publish-to-handler in ms at RATE events/s, consumer in this process."""
    bus = EventBus(url)
    latencies: list[float] = []

    @bus.subscribe("ticks", group="g")
    async def handle(event: Event) -> None:
        latencies.append(time.time() - event.data["t"])

    async with bus:
        consumer = asyncio.create_task(bus.run())
        count = int(RATE * SECONDS)
        start = time.perf_counter()
        for n in range(count):
            await bus.publish("ticks", {"t": time.time()}, key=f"k{n % 10}")
            await asyncio.sleep(max(0.0, start + (n + 1) / RATE - time.perf_counter()))
        while len(latencies) < count:
            await asyncio.sleep(0.01)
        bus.stop()
        await consumer
    return _percentiles(latencies)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


_REMOTE_CONSUMER = """
import asyncio, sys, time
from afterward.events import EventBus
bus = EventBus(sys.argv[1])
out = open(sys.argv[2], "w")
@bus.subscribe("ticks", group="remote")
async def handle(event):
    out.write(f"{time.time() - event.data['t']}\\n"); out.flush()
asyncio.run(bus.run())
"""


async def _remote_latency(url: str, tmp: Path) -> tuple[float, float]:
    """The same with the consumer in another process (it polls every 50 ms)."""
    out = tmp / "latencies.txt"
    process = subprocess.Popen([sys.executable, "-c", _REMOTE_CONSUMER, url, str(out)])
    try:
        async with EventBus(url) as bus:
            while (await bus.lag()).get("remote") is None:
                await asyncio.sleep(0.05)
            count = int(RATE * SECONDS)
            start = time.perf_counter()
            for n in range(count):
                await bus.publish("ticks", {"t": time.time()}, key=f"k{n % 10}")
                await asyncio.sleep(max(0.0, start + (n + 1) / RATE - time.perf_counter()))
            while not out.exists() or len(out.read_text().splitlines()) < count:
                await asyncio.sleep(0.05)
    finally:
        process.terminate()
        process.wait()
    return _percentiles([float(line) for line in out.read_text().splitlines()])


# -- memory -------------------------------------------------------------------------------

_RSS_CONSUMER = """
import asyncio, sys
from afterward.events import EventBus
bus = EventBus(sys.argv[1])
count = 0
@bus.subscribe("backlog", group=sys.argv[2])
async def handle(event):
    global count
    count += 1
if sys.argv[2] == "idle":
    asyncio.run(bus.lag())
else:
    asyncio.run(bus.drain())
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(count, int(hwm) / 1024)
"""


def _rss(url: str, group: str) -> tuple[int, float]:
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CONSUMER, url, group],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), float(out[1])


async def _fill_backlog(url: str) -> float:
    async with EventBus(url) as bus:
        start = time.perf_counter()
        for base in range(0, BACKLOG, 5000):
            await bus.publish_many(
                "backlog",
                [{"data": {"n": n}, "key": f"k{n % 1000}"} for n in range(base, base + 5000)],
            )
        return time.perf_counter() - start


def run() -> str:
    """Run the event bus benchmarks; return their Markdown tables."""
    tmp = _tmp()
    single, batched = asyncio.run(_publish_rates(f"sqlite:///{tmp / 'publish.db'}"))
    raw_single, raw_batched = _raw_sqlite_rates(tmp / "raw.db")
    e2e = asyncio.run(_end_to_end(f"sqlite:///{tmp / 'e2e.db'}"))
    e2e_memory = asyncio.run(_end_to_end("memory://"))
    p50, p99 = asyncio.run(_latency(f"sqlite:///{tmp / 'latency.db'}"))
    m50, m99 = asyncio.run(_latency("memory://"))
    r50, r99 = asyncio.run(_remote_latency(f"sqlite:///{tmp / 'remote.db'}", tmp))
    backlog_url = f"sqlite:///{tmp / 'backlog.db'}"
    fill = asyncio.run(_fill_backlog(backlog_url))
    _, idle_rss = _rss(backlog_url, "idle")
    start = time.perf_counter()
    consumed, rss = _rss(backlog_url, "streaming")
    drain_seconds = time.perf_counter() - start

    parts = [
        table(
            "SQLite publish throughput",
            ["what", "events/s", "ratio vs raw sqlite3"],
            [
                [
                    f"bus.publish, one at a time ({SINGLE:,})",
                    f"{single:,.0f}",
                    f"{single / raw_single:.2f}x",
                ],
                ["raw sqlite3 INSERT, one transaction each (peer)", f"{raw_single:,.0f}", "1.00x"],
                [
                    f"bus.publish_many, 1,000 per call ({BATCHED:,})",
                    f"{batched:,.0f}",
                    f"{batched / raw_batched:.2f}x",
                ],
                [
                    "raw sqlite3 executemany, 1,000 per transaction (peer)",
                    f"{raw_batched:,.0f}",
                    "1.00x",
                ],
            ],
        ),
        table(
            f"End to end: {E2E:,} small events, keyed and versioned, one group",
            ["backend", "events/s publish-to-handled", "ratio vs memory://", "target"],
            [
                ["sqlite", f"{e2e:,.0f}", f"{e2e / e2e_memory:.2f}x", ">= 20,000/s"],
                ["memory:// (peer: the same bus, no storage)", f"{e2e_memory:,.0f}", "1.00x", ""],
            ],
        ),
        table(
            f"Publish-to-handler latency at {RATE:,} events/s for {SECONDS:g} s",
            ["consumer", "p50 ms", "p99 ms", "p50 ratio vs memory://"],
            [
                ["sqlite, same process (woken by the publish)", p50, p99, f"{p50 / m50:.1f}x"],
                ["sqlite, another process (polls every 50 ms)", r50, r99, f"{r50 / m50:.1f}x"],
                ["memory:// same process (peer)", m50, m99, "1.0x"],
            ],
        ),
        table(
            f"Consumer memory facing a backlog of {BACKLOG:,} events",
            ["process", "peak RSS MB", "events handled", "seconds", "target"],
            [
                [
                    "consumer draining the backlog",
                    rss,
                    f"{consumed:,}",
                    f"{drain_seconds:.1f}",
                    "< 150 MB",
                ],
                ["idle consumer, same imports and bus (peer)", idle_rss, "0", "", ""],
                [f"(filling the backlog took {fill:.1f} s)", "", "", "", ""],
            ],
        ),
    ]
    return "\n".join(parts)
