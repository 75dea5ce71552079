"""Concurrency benchmarks: ``python -m bench concurrency``.

``concurrency.run(..., driver="process")`` on 8 CPU-bound tasks against
``concurrent.futures.ProcessPoolExecutor`` with the same number of workers (target:
within 10%), both with warm pools, plus the first (cold) call of each.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable

from afterward import concurrency
from bench._table import median_ms, table

__all__ = ["run"]

TASKS = 8
ROUNDS = 5
WORK = 3_000_000


def burn(seed: int) -> int:
    """CPU-bound work: about 0.1-0.2 s of pure-Python arithmetic."""
    total = seed
    for i in range(WORK):
        total = (total + i * i) % 1_000_003
    return total


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run() -> str:
    """Run the concurrency benchmark; return its Markdown table."""
    workers = os.cpu_count() or 1
    tasks = [lambda n=n: burn(n) for n in range(TASKS)]
    expected = [burn(n) for n in range(TASKS)]

    def ours() -> None:
        assert concurrency.run_sync(tasks, driver="process") == expected

    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as executor:

        def theirs() -> None:
            assert list(executor.map(burn, range(TASKS))) == expected

        cold_theirs = _timed(theirs)
        cold_ours = _timed(ours)
        warm_theirs, warm_ours = [], []
        for _ in range(ROUNDS):  # interleaved, so both see the same machine load
            warm_theirs.append(_timed(theirs))
            warm_ours.append(_timed(ours))
    ours_ms, theirs_ms = median_ms(warm_ours), median_ms(warm_theirs)
    return table(
        f"{TASKS} CPU-bound tasks on {workers} worker processes (median of {ROUNDS}, warm)",
        ["what", "ms", "ratio vs ProcessPoolExecutor", "first call (cold), ms"],
        [
            [
                "concurrency.run(driver='process')",
                ours_ms,
                f"{ours_ms / theirs_ms:.2f}x",
                cold_ours * 1000,
            ],
            ["ProcessPoolExecutor.map (peer)", theirs_ms, "1.00x", cold_theirs * 1000],
        ],
    )
