"""Durable requests: ``python -m bench durable`` (issue 15's second part).

``BENCH_WEBHOOKS`` (2,000) webhooks of 5 ms to a loopback server failing 10% of requests
at random (503), delivered three ways in one run:

1. ``http.post(url, json=...).dispatch(tries=5, backoff=0)`` on a SQLite bus, one
   ``afterward worker -c 16``;
2. the peer: a hand-written ``@job(tries=5)`` that POSTs with ``afterward.http`` and
   raises on a status >= 400, the same queue and worker;
3. the floor: raw aiohttp, 16 in flight, retrying 503s in a loop, nothing durable.

Each durable run's clock starts once its worker is up (a warm-up job done) and stops
when the queue has nothing ready, delayed or running. ``ROUNDS`` (3) interleaved rounds;
the table has each system's median round (by total time).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from afterward import http
from afterward.events import EventBus
from bench._durable_jobs import post_webhook
from bench._http_server import serve
from bench._table import table
from bench.bench_queue import _bus, _wait, _workers

__all__ = ["run"]

WEBHOOKS = int(os.environ.get("BENCH_WEBHOOKS", "2000"))
CONCURRENCY = 16
ROUNDS = 3
QUERY = "?ms=5&fail=0.1"


def _idle(bus: EventBus) -> bool:
    depth = bus.queue_stats_sync("default").get("default")
    return depth is None or depth.ready + depth.delayed + depth.running == 0


def _durable(url: str, dispatch: Callable[[int], object]) -> tuple[float, float, int]:
    """(seconds to enqueue, seconds enqueue-to-delivered, failed jobs)."""
    with tempfile.TemporaryDirectory(prefix="afterward-bench-durable-") as folder:
        bus_url = f"sqlite:///{Path(folder) / 'bus.db'}"
        with _bus(bus_url) as bus, _workers(bus_url, 1, CONCURRENCY):
            http.post(url + "?ms=0", json={}).dispatch()  # the warm-up
            _wait(lambda: _idle(bus))
            started = time.perf_counter()
            for n in range(WEBHOOKS):
                dispatch(n)
            enqueued = time.perf_counter() - started
            _wait(lambda: _idle(bus))
            return enqueued, time.perf_counter() - started, len(bus.failed_jobs())


async def _raw(url: str) -> tuple[float, int]:
    """(seconds, 503s retried) for raw aiohttp with a retry loop."""
    gate = asyncio.Semaphore(CONCURRENCY)
    retried = 0
    async with aiohttp.ClientSession() as session:

        async def send(n: int) -> None:
            nonlocal retried
            async with gate:
                while True:
                    async with session.post(url + QUERY, json={"n": n}) as response:
                        await response.read()
                        if response.status < 500:
                            return
                    retried += 1

        started = time.perf_counter()
        await asyncio.gather(*(send(n) for n in range(WEBHOOKS)))
        return time.perf_counter() - started, retried


def _median(rounds: list[tuple[float, ...]], total: int) -> tuple[float, ...]:
    """The round whose ``total``-th field is the median (rounds are odd in number)."""
    middle = statistics.median_low(r[total] for r in rounds)
    return next(r for r in rounds if r[total] == middle)


def run() -> str:
    durables: list[tuple[float, ...]] = []
    peers: list[tuple[float, ...]] = []
    raws: list[tuple[float, ...]] = []
    with serve() as url:
        for _ in range(ROUNDS):
            durables.append(
                _durable(
                    url,
                    lambda n: http.post(url + QUERY, json={"n": n}).dispatch(tries=5, backoff=0),
                )
            )
            peers.append(
                _durable(
                    url,
                    lambda n: post_webhook.dispatch(url + QUERY, {"n": n}, connection="queue"),
                )
            )
            raws.append(asyncio.run(_raw(url)))
    durable, peer = _median(durables, 1), _median(peers, 1)
    raw, retried = _median(raws, 0)
    rows: list[list[object]] = []
    for name, (enqueued, total, failed) in (
        ("afterward `request.dispatch(tries=5)`", durable),
        ("hand-written `@job(tries=5)` posting with `http` (peer)", peer),
    ):
        rows.append(
            [name, enqueued, total, f"{WEBHOOKS / total:,.0f}", f"{total / peer[1]:.2f}x", failed]
        )
    rows.append(
        [
            f"raw aiohttp, {CONCURRENCY} in flight, not durable ({retried} retries)",
            "",
            raw,
            f"{WEBHOOKS / raw:,.0f}",
            f"{raw / peer[1]:.2f}x",
            "",
        ]
    )
    return table(
        f"Durable webhooks: {WEBHOOKS:,} POSTs of 5 ms, 10% answered 503 at random, "
        f"`afterward worker -c {CONCURRENCY}` on SQLite",
        [
            "system",
            "enqueue s",
            "enqueue to delivered s",
            "webhooks/s",
            "time vs peer",
            "failed jobs",
        ],
        rows,
    )
