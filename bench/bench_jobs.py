"""Job benchmarks: ``python -m bench jobs``.

1. Cost of ``Job.dispatch(connection="deferred")`` inside an open scope (target
   < 20 µs), against a bare ``afterward.defer`` of a coroutine.
2. End-to-end throughput of 10,000 no-op deferred jobs (dispatch, then the scope runs
   them all), against 10,000 bare deferred coroutines.
3. ``background`` start latency: dispatch of a no-op job to the end of its child
   process, against a bare ``subprocess.Popen([sys.executable, "-c", "pass"])``.
4. Durable jobs: 10,000 no-op jobs enqueue-to-done on afterward's queue against Celery,
   Dramatiq, RQ, arq, SAQ, huey and Procrastinate (``bench/_queue_peers.py``), the
   peers that are installed (``pip install 'afterward[bench]'``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable

import afterward
from afterward import Job
from afterward.jobs._background import spawn
from bench._queue_peers import jobs_table
from bench._table import median_ms, table

__all__ = ["run"]

N = 10_000
ROUNDS = 5
SPAWNS = 10


class Noop(Job):
    """A job that does nothing (async, so no thread hop)."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def handle(self) -> None:
        return None


async def _noop(n: int) -> None:
    return None


def _dispatch_cost(dispatch: Callable[[int], object]) -> float:
    """Median seconds per call over ROUNDS batches of N calls inside a scope."""
    samples = []
    for _ in range(ROUNDS):
        scope = afterward.scope()
        with scope:
            start = time.perf_counter()
            for n in range(N):
                dispatch(n)
            samples.append((time.perf_counter() - start) / N)
    return sorted(samples)[len(samples) // 2]


def _throughput(dispatch: Callable[[int], object]) -> float:
    """Median items per second: dispatch N, then the scope runs them all."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        with afterward.scope():
            for n in range(N):
                dispatch(n)
        samples.append(N / (time.perf_counter() - start))
    return sorted(samples)[len(samples) // 2]


def _background_latency() -> tuple[list[float], list[float]]:
    jobs, bare = [], []
    for _ in range(SPAWNS):
        start = time.perf_counter()
        subprocess.Popen([sys.executable, "-c", "pass"]).wait()
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        sent = Noop(n=0).dispatch(connection="bench.capture")  # builds the payload only
        spawn(sent).wait()
        jobs.append(time.perf_counter() - start)
    return jobs, bare


class _Capture:
    """A connection that takes payloads and does nothing with them."""

    def dispatch(self, payload: object) -> None:
        return None


def run() -> str:
    """Run the job benchmarks; return their Markdown tables."""
    logging.getLogger("afterward.jobs").setLevel(logging.WARNING)
    Noop(n=0).dispatch(connection="sync")  # warm up: imports, loop thread, path check
    job_cost = _dispatch_cost(lambda n: Noop(n=n).dispatch(connection="deferred"))
    bare_cost = _dispatch_cost(lambda n: afterward.defer(_noop, n))
    job_rate = _throughput(lambda n: Noop(n=n).dispatch(connection="deferred"))
    bare_rate = _throughput(lambda n: afterward.defer(_noop, n))

    afterward.jobs.register_connection("bench.capture", _Capture())
    try:
        jobs, bare = _background_latency()
    finally:
        afterward.jobs.unregister_connection("bench.capture")
    job_ms, bare_ms = median_ms(jobs), median_ms(bare)

    return "\n".join(
        [
            table(
                f"Deferred job dispatch ({N:,} per round, median of {ROUNDS})",
                ["what", "µs per call", "ratio vs defer()", "target"],
                [
                    [
                        "Job.dispatch(connection='deferred')",
                        job_cost * 1e6,
                        f"{job_cost / bare_cost:.2f}x",
                        "< 20 µs",
                    ],
                    ["afterward.defer(coroutine) (peer)", bare_cost * 1e6, "1.00x", ""],
                ],
            ),
            table(
                f"{N:,} no-op deferred jobs end to end (median of {ROUNDS})",
                ["what", "per second", "ratio vs defer()"],
                [
                    ["deferred jobs", job_rate, f"{job_rate / bare_rate:.2f}x"],
                    ["deferred coroutines (peer)", bare_rate, "1.00x"],
                ],
            ),
            table(
                f"Background job start to exit, no-op job (median of {SPAWNS})",
                ["what", "ms", "ratio vs bare Popen"],
                [
                    ["background job child", job_ms, f"{job_ms / bare_ms:.2f}x"],
                    ["Popen([python, '-c', 'pass']) (peer)", bare_ms, "1.00x"],
                ],
            ),
            jobs_table(),
        ]
    )
