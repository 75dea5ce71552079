"""HTTP benchmarks: ``python -m bench http``.

1. 200 requests to a loopback server (its own process) answering after 20 ms, at most
   50 in flight: afterward ``pool`` against raw aiohttp, httpx over the aiohttp
   transport, and httpx with its default transport (same limits), and the ideal.
2. The same workload through the sync twins, from plain threads (as in Flask/Django).
3. Per-request overhead of ``batch`` with all five hooks against raw httpx on 1,000
   fast requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from afterward import http
from bench._http_server import serve
from bench._table import median_ms, table

__all__ = ["run"]

N, DELAY_MS, CONCURRENCY = 200, 20, 50
FAST_N, FAST_CONCURRENCY = 1000, 16
ROUNDS = 7


async def _timed(fn: Callable[[], Awaitable[Any]], rounds: int = ROUNDS) -> list[float]:
    await fn()  # warm up: connections, imports
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


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

    out["afterward http.pool"] = median_ms(await _timed(pool))

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_aiohttp() -> None:
            async with session.get(target) as resp:
                await resp.read()

        out["raw aiohttp"] = median_ms(
            await _timed(lambda: _gather_capped(N, CONCURRENCY, one_aiohttp))
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


def run() -> str:
    """Run the three benchmarks and return their Markdown tables."""
    with serve() as url:
        concurrent_ms = asyncio.run(_concurrent(url))
        sync_ms = _sync_twins(url)
        overhead_ms = asyncio.run(_overhead(url))

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
        ]
    )
