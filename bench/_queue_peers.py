"""Durable jobs, 10,000 no-op jobs enqueue-to-done: afterward's queue vs its peers.

Each system gets a worker process started (and warmed up with one job) before the
clock starts; the clock runs from the first enqueue to the last job done (a Redis
counter every job increments). Concurrency 4 everywhere (threads, or the system's
equivalent); RQ runs its ``SimpleWorker`` (its default worker forks once per job).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._table import table

__all__ = ["jobs_table"]

N = int(os.environ.get("BENCH_JOBS", "10000"))
BIN = Path(sys.executable).parent


def _redis() -> Any:
    import redis

    return redis.Redis()


def _env(peer: str, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BENCH_PEER": peer,
        "BENCH_COUNTER": f"afterward-bench:{peer}",
        "BENCH_HUEY_DB": str(tmp / "huey.db"),
        "PYTHONPATH": os.getcwd(),
    }


def _measure(peer: str, worker: list[str], enqueue: Callable[[Any], None]) -> float:
    tmp = Path(tempfile.mkdtemp(prefix=f"afterward-bench-{peer}-"))
    env = _env(peer, tmp)
    os.environ.update({k: env[k] for k in ("BENCH_PEER", "BENCH_COUNTER", "BENCH_HUEY_DB")})
    import importlib

    import bench._queue_jobs as jobs

    jobs = importlib.reload(jobs)
    r = _redis()
    counter = env["BENCH_COUNTER"]
    r.delete(counter)
    process = subprocess.Popen(
        worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.getcwd()
    )
    try:
        enqueue(jobs)  # warm-up job: the worker is up once it is done
        while int(r.get(counter) or 0) < 1:
            time.sleep(0.01)
        r.delete(counter)
        start = time.perf_counter()
        for _ in range(N):
            enqueue(jobs)
        while int(r.get(counter) or 0) < N:
            time.sleep(0.005)
        return time.perf_counter() - start
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _afterward() -> float:
    tmp = Path(tempfile.mkdtemp(prefix="afterward-bench-queue-"))
    url = f"sqlite:///{tmp / 'bus.db'}"
    from afterward.events import EventBus

    bus = EventBus(url)
    bus.use_for_jobs()
    worker = [str(BIN / "afterward"), "worker", "--bus", url, "--concurrency", "4"]
    try:
        return _measure("afterward", worker, lambda jobs: jobs.noop.dispatch(connection="queue"))
    finally:
        from afterward.jobs import unregister_connection

        unregister_connection("queue")


def _celery() -> float:
    worker = [
        str(BIN / "celery"),
        "-A",
        "bench._queue_jobs",
        "worker",
        "--pool",
        "threads",
        "-c",
        "4",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        "celery",
        "--loglevel",
        "WARNING",
    ]
    _redis().connection_pool.connection_kwargs  # noqa: B018 - Redis is up
    import redis

    redis.Redis(db=5).flushdb()
    return _measure("celery", worker, lambda jobs: jobs.noop.delay())


def _dramatiq() -> float:
    import redis

    redis.Redis(db=6).flushdb()
    worker = [str(BIN / "dramatiq"), "bench._queue_jobs", "--processes", "1", "--threads", "4"]
    return _measure("dramatiq", worker, lambda jobs: jobs.noop.send())


def _rq() -> float:
    import redis
    from rq import Queue

    conn = redis.Redis(db=7)
    conn.flushdb()
    queue = Queue("bench", connection=conn)
    worker = [
        str(BIN / "rq"),
        "worker",
        "bench",
        "--url",
        "redis://127.0.0.1:6379/7",
        "--worker-class",
        "rq.worker.SimpleWorker",
        "--quiet",
    ]
    return _measure("rq", worker, lambda jobs: queue.enqueue(jobs.bump))


def _huey() -> float:
    worker = [
        str(BIN / "huey_consumer"),
        "bench._queue_jobs.huey",
        "-w",
        "4",
        "-k",
        "thread",
        "-q",
    ]
    return _measure("huey", worker, lambda jobs: jobs.noop())


def jobs_table() -> str:
    """Measure every system that is installed; return the Markdown table."""
    systems: list[tuple[str, Callable[[], float]]] = [
        ("afterward queue (SQLite bus, `afterward worker -c 4`)", _afterward),
        ("Celery 5, Redis broker, threads pool -c 4 (peer)", _celery),
        ("Dramatiq, Redis broker, 1 process x 4 threads (peer)", _dramatiq),
        ("RQ, Redis, SimpleWorker (peer)", _rq),
        ("huey, SQLite storage, 4 threads (peer)", _huey),
    ]
    results: list[tuple[str, float | None, str]] = []
    for name, measure in systems:
        try:
            results.append((name, measure(), ""))
        except Exception as exc:  # a missing peer must not hide the others
            results.append((name, None, f"{type(exc).__name__}: {exc}"[:80]))
    ours = results[0][1]
    rows = []
    for name, seconds, error in results:
        if seconds is None:
            rows.append([name, "", "", "", error])
            continue
        ratio = f"{seconds / ours:.2f}x" if ours else ""
        rows.append([name, f"{seconds:.2f}", f"{N / seconds:,.0f}", ratio, ""])
    return table(
        f"Durable jobs: {N:,} no-op jobs, enqueue to done",
        ["system", "seconds", "jobs/s", "time vs afterward", "note"],
        rows,
    )
