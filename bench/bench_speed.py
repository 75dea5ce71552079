"""The SQLite bus against the floor of its own storage (``python -m bench speed``).

Each afterward row is compared with plain ``sqlite3`` doing, in the same run and the
same file settings (WAL, ``synchronous=NORMAL``), the least a raw client must do for
the same result:

- publishing: an ``INSERT`` and a ``COMMIT`` per event (the floor of issue 18), against
  ``await bus.publish`` one at a time and from 50 concurrent publishers (a web app's
  requests), with each publish's latency;
- draining one group: two floors. "read back + record IDs" reads each batch and writes
  the processed IDs (the floor the issue measured); "every statement a drain must run"
  runs exactly the SQL afterward's SQLite consumer runs for the same guarantees, on a
  copy of the same file: the batch read, the duplicate and version lookups, then in one
  transaction the attempts (history), the position, the processed IDs and the versions.

``BENCH_SPEED_QUICK=1`` shrinks every size by 10x (for a smoke run).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from afterward.events import Event, EventBus
from afterward.events.backends.sqlite._schema import SCHEMA
from bench._table import percentile_ms, table

__all__ = ["run"]

SCALE = 10 if os.environ.get("BENCH_SPEED_QUICK") == "1" else 1
PUBLISHES = 5_000 // SCALE
PUBLISHERS = 50
DRAIN = 20_000 // SCALE
BATCH = 500
ROUNDS = 3
PAYLOAD = {"order_id": 12345, "total": 99.5, "currency": "EUR"}


# -- publishing ---------------------------------------------------------------------


async def _publish(url: str, publishers: int) -> tuple[float, list[float]]:
    """Events/s and each publish's seconds, ``publishers`` tasks awaiting in turn."""
    latencies: list[float] = []

    async def publisher(bus: EventBus, first: int) -> None:
        for n in range(first, PUBLISHES, publishers):
            started = time.perf_counter()
            await bus.publish("orders", PAYLOAD, key=f"k{n % 100}")
            latencies.append(time.perf_counter() - started)

    async with EventBus(url) as bus:
        await bus.publish("orders", PAYLOAD)  # the file and its tables exist
        started = time.perf_counter()
        await asyncio.gather(*(publisher(bus, first) for first in range(publishers)))
        return PUBLISHES / (time.perf_counter() - started), latencies


def _raw_publish(path: Path) -> tuple[float, list[float]]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(SCHEMA)
    value = b'{"order_id":12345,"total":99.5,"currency":"EUR"}'
    latencies: list[float] = []
    started = time.perf_counter()
    for n in range(PUBLISHES):
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO afterward_events VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
            ("orders", n, f"k{n % 100}", f"id-{n}", time.time(), value),
        )
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - began)
    rate = PUBLISHES / (time.perf_counter() - started)
    conn.close()
    return rate, latencies


# -- draining -----------------------------------------------------------------------


async def _fill(url: str) -> None:
    async with EventBus(url) as bus:
        for base in range(0, DRAIN, 1000):
            await bus.publish_many(
                "orders",
                [
                    {"data": PAYLOAD, "key": f"k{n % 1000}", "version": n}
                    for n in range(base, base + 1000)
                ],
            )


async def _drain(url: str, history: bool) -> float:
    bus = EventBus(url, batch_size=BATCH, keep_history=history)
    handled = 0

    @bus.subscribe("orders", group="g")
    async def handle(event: Event) -> None:
        nonlocal handled
        handled += 1

    started = time.perf_counter()
    await bus.drain()
    elapsed = time.perf_counter() - started
    assert handled == DRAIN, handled
    return DRAIN / elapsed


def _raw_drain(path: Path, history: bool, full: bool) -> float:
    """The floor: the batch reads and writes of one group's drain in plain sqlite3."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    started = time.perf_counter()
    position = 0
    while True:
        rows = conn.execute(
            "SELECT topic, off, key, id, ts, cid, version, headers, value FROM afterward_events"
            " WHERE topic = 'orders' AND off >= ? ORDER BY off LIMIT ?",
            (position, BATCH),
        ).fetchall()
        if not rows:
            break
        ids = [row[3] for row in rows]
        keys = sorted({row[2] for row in rows})
        now = time.time()
        if full:
            conn.execute(
                f"SELECT id FROM afterward_processed WHERE grp = 'g' AND id IN "
                f"({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
            conn.execute(
                f"SELECT key, version FROM afterward_versions WHERE grp = 'g' AND topic = 'orders'"
                f" AND key IN ({','.join('?' * len(keys))})",
                keys,
            ).fetchall()
        position = rows[-1][1] + 1
        conn.execute("BEGIN IMMEDIATE")
        if history:
            conn.executemany(
                "INSERT INTO afterward_attempts VALUES (?, ?, 'g', 'orders', ?, 1, 'ok', NULL)",
                [(row[5] or row[3], now, row[3]) for row in rows],
            )
        conn.executemany(
            "INSERT OR IGNORE INTO afterward_processed VALUES ('g', ?, 'orders', ?)",
            [(event_id, now) for event_id in ids],
        )
        if full:
            conn.execute(
                "INSERT OR REPLACE INTO afterward_positions VALUES ('g', 'orders', 0, ?)",
                (position,),
            )
            conn.executemany(
                "INSERT INTO afterward_versions VALUES ('g', 'orders', ?, ?, ?) "
                "ON CONFLICT (grp, topic, key) DO UPDATE SET version = excluded.version, "
                "at = excluded.at",
                [(row[2], row[6], now) for row in rows],
            )
        conn.execute("COMMIT")
    rate = DRAIN / (time.perf_counter() - started)
    conn.close()
    return rate


def _drain_rates(tmp: Path) -> dict[str, float]:
    """Events/s of every drain contender, the median of ``ROUNDS`` interleaved rounds,
    each on its own copy of one filled file."""
    source = tmp / "filled.db"
    asyncio.run(_fill(f"sqlite:///{source}"))
    contenders = {
        "afterward drain, history on": lambda p: asyncio.run(_drain(f"sqlite:///{p}", True)),
        "raw: every statement a drain must run, history on": lambda p: _raw_drain(p, True, True),
        "raw: read back + record IDs (issue 18's floor)": lambda p: _raw_drain(p, False, False),
        "afterward drain, history off": lambda p: asyncio.run(_drain(f"sqlite:///{p}", False)),
        "raw: every statement a drain must run, history off": lambda p: _raw_drain(p, False, True),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for n in range(ROUNDS):
        for index, (name, measure) in enumerate(contenders.items()):
            copy = tmp / f"drain-{n}-{index}.db"
            shutil.copy(source, copy)
            rates[name].append(measure(copy))
    return {name: statistics.median(found) for name, found in rates.items()}


def run() -> str:
    """Run the publish and drain measurements; return their Markdown tables."""
    tmp = Path(tempfile.mkdtemp(prefix="afterward-bench-speed-"))
    published: dict[str, list[tuple[float, list[float]]]] = {"raw": [], "1": [], "50": []}
    for n in range(ROUNDS):
        published["raw"].append(_raw_publish(tmp / f"raw-{n}.db"))
        published["1"].append(asyncio.run(_publish(f"sqlite:///{tmp / f'one-{n}.db'}", 1)))
        published["50"].append(
            asyncio.run(_publish(f"sqlite:///{tmp / f'many-{n}.db'}", PUBLISHERS))
        )
    rows = []
    floor = statistics.median(rate for rate, _ in published["raw"])
    labels = {
        "raw": "raw sqlite3: INSERT + COMMIT per event (floor)",
        "1": "afterward: awaited publish, one at a time",
        "50": f"afterward: {PUBLISHERS} concurrent publishers",
    }
    for name, label in labels.items():
        rate = statistics.median(r for r, _ in published[name])
        samples = [s for _, found in published[name] for s in found]
        rows.append(
            [label, f"{rate:,.0f}", f"{rate / floor:.2f}"]
            + [percentile_ms(samples, q) for q in (0.5, 0.99)]
        )
    drains = _drain_rates(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    drain_floor = drains["raw: every statement a drain must run, history on"]
    issue_floor = drains["raw: read back + record IDs (issue 18's floor)"]
    return "\n".join(
        [
            table(
                f"SQLite publish: {PUBLISHES:,} events (median of {ROUNDS} interleaved rounds)",
                ["contender", "events/s", "ratio to floor", "p50 ms", "p99 ms"],
                rows,
            ),
            table(
                f"SQLite drain: {DRAIN:,} keyed, versioned events, one group, batches of "
                f"{BATCH} (median of {ROUNDS} interleaved rounds)",
                ["contender", "events/s", "ratio to the full floor", "ratio to issue's floor"],
                [
                    [name, f"{rate:,.0f}", f"{rate / drain_floor:.2f}", f"{rate / issue_floor:.2f}"]
                    for name, rate in drains.items()
                ],
            ),
        ]
    )
