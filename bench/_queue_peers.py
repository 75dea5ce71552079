"""Durable jobs, 10,000 no-op jobs enqueue-to-done: afterward's queue vs its peers.

Each system gets a worker process started (and warmed up with one job) before the
clock starts; the clock runs from the first enqueue to the last job done (a Redis
counter every job increments). Concurrency 4 everywhere (threads, async slots, or the
system's equivalent); RQ runs its ``SimpleWorker`` (its default worker forks once per
job). The methodology is in ``bench/_queue_run.py``, the peers in
``bench/_peers_redis.py`` and ``bench/_peers_sql.py``, the jobs in
``bench/_queue_jobs.py``.

``BENCH_JOBS`` sets N (10,000); ``BENCH_JOBS_ROUNDS`` the interleaved rounds whose
median is reported (3); ``BENCH_JOBS_ONLY`` a comma-separated list of systems, the
first word of their rows (``afterward,arq,procrastinate``), for a partial run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import ModuleType

from bench._queue_run import BIN, REDIS, TAG, N, Send, delete_keys, measure, repeat
from bench._table import table

__all__ = ["AFTERWARD", "jobs_table"]

ROUNDS = int(os.environ.get("BENCH_JOBS_ROUNDS", "3"))


def _afterward(url: str) -> float:
    """afterward's queue on the bus at ``url``: ``afterward worker --concurrency 4``."""
    from afterward.events import EventBus
    from afterward.jobs import unregister_connection

    bus = EventBus(url)
    bus.use_for_jobs()
    worker = [str(BIN / "afterward"), "worker", "--bus", url, "--concurrency", "4"]

    def client(jobs: ModuleType) -> AbstractContextManager[Send]:
        return nullcontext(repeat(lambda: jobs.noop.dispatch(connection="queue")))

    try:
        return measure("afterward", worker, client)
    finally:
        unregister_connection("queue")


def _afterward_sqlite() -> float:
    tmp = Path(tempfile.mkdtemp(prefix="afterward-bench-queue-"))
    try:
        return _afterward(f"sqlite:///{tmp / 'bus.db'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _afterward_redis() -> float:
    import uuid

    prefix = f"{TAG}-{uuid.uuid4().hex[:8]}:"
    try:
        return _afterward(f"{REDIS}/0?prefix={prefix}")
    finally:
        delete_keys(0, f"{prefix}*")


#: afterward's rows, first the one every "time vs afterward" is against. A row for
#: another backend is ``(label, functools.partial(_afterward, url))``, or a function
#: that makes a fresh bus URL (and removes what it made) around ``_afterward(url)``.
AFTERWARD: list[tuple[str, Callable[[], float]]] = [
    ("afterward queue (SQLite bus, `afterward worker -c 4`)", _afterward_sqlite),
    ("afterward queue (Redis bus, `afterward worker -c 4`)", _afterward_redis),
]


def _systems() -> list[tuple[str, Callable[[], float]]]:
    from bench import _peers_redis, _peers_sql

    systems = [*AFTERWARD, *_peers_redis.PEERS, *_peers_sql.PEERS]
    only = {w.strip().lower() for w in os.environ.get("BENCH_JOBS_ONLY", "").split(",")} - {""}
    if only:  # by the label's first word: afterward, celery, rq, arq...
        systems = [s for s in systems if s[0].split()[0].strip(",").lower() in only]
    return systems


def jobs_table() -> str:
    """Measure every system that is installed; return the Markdown table."""
    systems = _systems()
    seconds: dict[str, list[float]] = {name: [] for name, _ in systems}
    errors: dict[str, str] = {}
    for _ in range(ROUNDS):  # interleaved: every system once per round
        for name, run in systems:
            if name in errors:
                continue
            try:
                seconds[name].append(run())
            except Exception as exc:  # a missing peer must not hide the others
                errors[name] = f"{type(exc).__name__}: {exc}"[:100]
    medians = {n: statistics.median(s) for n, s in seconds.items() if s and n not in errors}
    ours = medians.get(systems[0][0]) if systems else None
    rows = []
    for name, _ in systems:
        if name not in medians:
            rows.append([name, "", "", "", "", errors.get(name, "")])
            continue
        median = medians[name]
        ratio = f"{median / ours:.2f}x" if ours else ""
        spread = " / ".join(f"{s:.2f}" for s in seconds[name])
        rows.append([name, f"{median:.2f}", f"{N / median:,.0f}", ratio, spread, ""])
    return table(
        f"Durable jobs: {N:,} no-op jobs, enqueue to done (median of {ROUNDS} interleaved rounds)",
        ["system", "seconds", "jobs/s", "time vs afterward", "rounds (s)", "note"],
        rows,
    )
