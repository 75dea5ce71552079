"""HTTP benchmarks: ``python -m bench http``.

1. 200 requests to a loopback server (its own process) answering after 20 ms, at most
   50 in flight: afterward ``pool`` against raw aiohttp, httpx over the aiohttp
   transport, and httpx with its default transport (same limits), and the ideal.
2. The same workload through the sync twins, from plain threads (as in Flask/Django).
3. Per-request overhead of ``batch`` with all five hooks against raw httpx on 1,000
   fast requests.
4. Retries: ``pool`` with ``retry=`` set but never triggered against plain ``pool``
   (rows of table 1, interleaved); and 1,000 deferred webhooks (POST with an
   ``Idempotency-Key``) to a server failing 10% of them at random, against the same
   run with no failures and the ideal for the attempts made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

import afterward
from afterward import http
from bench._http_server import serve
from bench._table import median_ms, table

__all__ = ["run"]

RETRY_ROW = "afterward http.pool, retry= set, never triggered"

N, DELAY_MS, CONCURRENCY = 200, 20, 50
FAST_N, FAST_CONCURRENCY = 1000, 16
ROUNDS = 7
WEBHOOKS, FAIL_RATE, WEBHOOK_ROUNDS = 1000, 0.1, 5
WEBHOOK_RETRY = http.Retry(3, backoff=0.01)


async def _timed(fn: Callable[[], Awaitable[Any]], rounds: int = ROUNDS) -> list[float]:
    await fn()  # warm up: connections, imports
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


async def _interleaved(
    fns: dict[str, Callable[[], Awaitable[Any]]], rounds: int = ROUNDS
) -> dict[str, float]:
    """Median ms of each of ``fns``, run in turn each round (the VM's drift hits all)."""
    for fn in fns.values():
        await fn()  # warm up
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            await fn()
            samples[name].append(time.perf_counter() - start)
    return {name: median_ms(taken) for name, taken in samples.items()}


async def _gather_capped(n: int, limit: int, one: Callable[[], Awaitable[object]]) -> None:
    gate = asyncio.Semaphore(limit)

    async def capped() -> None:
        async with gate:
            await one()

    await asyncio.gather(*(capped() for _ in range(n)))


async def _concurrent(url: str) -> dict[str, float]:
    target = f"{url}?ms={DELAY_MS}"
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    out: dict[str, float] = {}

    async def pool() -> None:
        await http.pool([http.get(target) for _ in range(N)], concurrency=CONCURRENCY)

    async def pool_retry() -> None:
        requests = [http.get(target) for _ in range(N)]
        await http.pool(requests, concurrency=CONCURRENCY, retry=http.Retry(3))

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_aiohttp() -> None:
            async with session.get(target) as resp:
                await resp.read()

        out.update(
            await _interleaved(
                {
                    "afterward http.pool": pool,
                    RETRY_ROW: pool_retry,
                    "raw aiohttp": lambda: _gather_capped(N, CONCURRENCY, one_aiohttp),
                }
            )
        )

    transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(transport=transport, limits=limits) as client:
        out["raw httpx over httpx-aiohttp"] = median_ms(
            await _timed(lambda: _gather_capped(N, CONCURRENCY, lambda: client.get(target)))
        )

    async with httpx.AsyncClient(limits=limits) as client:
        out["raw httpx, default transport"] = median_ms(
            await _timed(lambda: _gather_capped(N, CONCURRENCY, lambda: client.get(target)), 3)
        )
    return out


def _sync_twins(url: str) -> dict[str, float]:
    target = f"{url}?ms={DELAY_MS}"
    out: dict[str, float] = {}

    def in_thread(fn: Callable[[], object]) -> list[float]:
        samples: list[float] = []

        def work() -> None:
            fn()
            for _ in range(ROUNDS):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        return samples

    out["pool_sync (1 thread)"] = median_ms(
        in_thread(lambda: http.pool_sync([http.get(target) for _ in range(N)], concurrency=50))
    )
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as threads:

        def fan_out() -> None:
            list(threads.map(lambda _: http.get(target).send_sync(), range(N)))

        out[f"send_sync ({CONCURRENCY} threads)"] = median_ms(in_thread(fan_out))
    return out


async def _overhead(url: str) -> dict[str, float]:
    limits = httpx.Limits(max_connections=FAST_CONCURRENCY * 2)
    out: dict[str, float] = {}
    async with httpx.AsyncClient(transport=AiohttpTransport(limits=limits), limits=limits) as c:
        out["raw httpx over httpx-aiohttp"] = median_ms(
            await _timed(lambda: _gather_capped(FAST_N, FAST_CONCURRENCY, lambda: c.get(url)))
        )

    def requests() -> list[http.PendingRequest]:
        return [http.get(url) for _ in range(FAST_N)]

    async def pool() -> None:
        await http.pool(requests(), concurrency=FAST_CONCURRENCY)

    out["afterward http.pool"] = median_ms(await _timed(pool))

    def nothing(*args: object) -> None:
        return None

    async def nothing_async(*args: object) -> None:
        return None

    for label, hook in (("sync", nothing), ("async", nothing_async)):

        async def batch(hook: Callable[..., object] = hook) -> None:
            b = http.batch(requests(), concurrency=FAST_CONCURRENCY)
            await b.before(hook).progress(hook).then(hook).catch(hook).finally_(hook).send()

        out[f"http.batch, 5 {label} hooks"] = median_ms(await _timed(batch))
    return out


async def _webhooks(url: str) -> dict[float, tuple[float, float, float]]:
    """Per failure rate (0 and ``FAIL_RATE``): median ms, attempts and final failures."""

    async def deliver_all(fail: float) -> tuple[float, float, float]:
        target = f"{url}?ms={DELAY_MS}&fail={fail}"
        hooks = [
            http.post(target, json={"event": n}, headers={"Idempotency-Key": f"event-{n}"})
            for n in range(WEBHOOKS)
        ]
        failed: list[int] = []

        async def note_failure(batch: object, key: int, outcome: object) -> None:
            failed.append(key)

        retries = afterward.stats().get("http.retries", 0)
        start = time.perf_counter()
        async with afterward.scope():
            batch = http.batch(hooks, concurrency=CONCURRENCY)
            batch.retry(WEBHOOK_RETRY.times, WEBHOOK_RETRY.backoff).catch(note_failure).defer()
        elapsed = time.perf_counter() - start
        retries = afterward.stats().get("http.retries", 0) - retries
        return elapsed * 1000, WEBHOOKS + retries, len(failed)

    # Each retry is logged; keep the records (as an app's handler would) off the terminal.
    http_log = logging.getLogger("afterward.http")
    http_log.addHandler(logging.NullHandler())
    http_log.propagate = False
    out: dict[float, tuple[float, float, float]] = {}
    await deliver_all(0.0)  # warm up
    rounds: dict[float, list[tuple[float, float, float]]] = {0.0: [], FAIL_RATE: []}
    for _ in range(WEBHOOK_ROUNDS):
        for fail, taken in rounds.items():
            taken.append(await deliver_all(fail))
    for fail, taken in rounds.items():
        out[fail] = (
            statistics.median(t[0] for t in taken),
            statistics.median(t[1] for t in taken),
            statistics.median(t[2] for t in taken),
        )
    return out


def _webhook_table(results: dict[float, tuple[float, float, float]]) -> str:
    clean_ms = results[0.0][0]
    rows: list[list[object]] = []
    for fail, (ms, attempts, failed) in results.items():
        # Every attempt, first or retried, keeps CONCURRENCY in flight with no gap: a
        # retry's backoff holds no slot, so it only lengthens the tail.
        ideal = math.ceil(attempts / CONCURRENCY) * DELAY_MS
        label = "no failures" if not fail else f"{fail:.0%} failing, retry(3, backoff=0.01)"
        rows.append(
            [
                label,
                ms,
                f"{attempts:,.0f}",
                f"{failed:.0f}",
                ideal,
                f"{ms / ideal:.2f}x",
                f"{ms / clean_ms:.2f}x",
            ]
        )
    return table(
        f"{WEBHOOKS:,} deferred webhooks (POST, Idempotency-Key), server delay {DELAY_MS} ms, "
        f"{CONCURRENCY} in flight (median of {WEBHOOK_ROUNDS}, interleaved)",
        ["run", "ms", "attempts", "failed for good", "ideal ms", "vs ideal", "vs no failures"],
        rows,
    )


def run() -> str:
    """Run the four benchmarks and return their Markdown tables."""
    with serve() as url:
        concurrent_ms = asyncio.run(_concurrent(url))
        sync_ms = _sync_twins(url)
        overhead_ms = asyncio.run(_overhead(url))
        webhooks = asyncio.run(_webhooks(url))

    ideal = N / CONCURRENCY * DELAY_MS
    aio = concurrent_ms["raw aiohttp"]
    default = concurrent_ms["raw httpx, default transport"]
    rows1: list[list[object]] = [["ideal (requests / concurrency x delay)", ideal, "", "", ""]]
    for name, ms in concurrent_ms.items():
        rows1.append([name, ms, f"{ms / ideal:.2f}x", f"{ms / aio:.2f}x", f"{default / ms:.1f}x"])
    pool_ms = concurrent_ms["afterward http.pool"]
    rows2: list[list[object]] = [["http.pool (async, measured above)", pool_ms, "1.00x"]]
    rows2 += [[name, ms, f"{ms / pool_ms:.2f}x"] for name, ms in sync_ms.items()]
    raw = overhead_ms["raw httpx over httpx-aiohttp"]
    rows3 = [
        [name, ms, ms * 1000 / FAST_N, f"{(ms - raw) * 1000 / FAST_N:+.0f}", f"{ms / raw:.2f}x"]
        for name, ms in overhead_ms.items()
    ]
    return "\n".join(
        [
            table(
                f"{N} requests, server delay {DELAY_MS} ms, {CONCURRENCY} in flight (median ms)",
                ["client", "ms", "vs ideal", "vs raw aiohttp", "faster than default httpx"],
                rows1,
            ),
            table(
                f"Sync twins from plain threads, same workload (median ms of {ROUNDS})",
                ["client", "ms", "vs async http.pool"],
                rows2,
            ),
            table(
                f"{FAST_N} fast requests, {FAST_CONCURRENCY} in flight: per-request overhead",
                ["client", "ms total", "us / request", "us overhead vs raw", "vs raw httpx"],
                rows3,
            ),
            table(
                "retry= set but never triggered (rows of the first table, interleaved)",
                ["client", "ms", "vs http.pool", "vs raw aiohttp"],
                [
                    [
                        name,
                        concurrent_ms[name],
                        f"{concurrent_ms[name] / pool_ms:.2f}x",
                        f"{concurrent_ms[name] / aio:.2f}x",
                    ]
                    for name in ("afterward http.pool", RETRY_ROW)
                ],
            ),
            _webhook_table(webhooks),
        ]
    )
