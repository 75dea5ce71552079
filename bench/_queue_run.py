"""How the durable-jobs benchmark measures one system (used by ``bench/_queue_peers.py``).

A worker process is started (its own CLI, concurrency 4 or the system's equivalent) and
warmed up with one job; then the clock runs from the first of N enqueues (one after
another, from this process) to the last job done, which the Redis counter that every job
increments tells. The shared Redis is never flushed: every system gets key names of its
own (``afterward-bench`` in them) and :func:`delete_keys` removes exactly those.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "BIN",
    "REDIS",
    "TAG",
    "N",
    "Send",
    "async_sender",
    "delete_keys",
    "measure",
    "repeat",
]

N = int(os.environ.get("BENCH_JOBS", "10000"))
BIN = Path(sys.executable).parent
REDIS = "redis://127.0.0.1:6379"
#: In every key, queue and namespace the benchmark creates, so it can delete them all.
TAG = "afterward-bench"
#: How long the N jobs may take before the measurement is given up.
TIMEOUT = float(os.environ.get("BENCH_JOBS_TIMEOUT", "600"))

#: ``send(n)`` enqueues n jobs, one after another.
Send = Callable[[int], None]
Client = Callable[[ModuleType], AbstractContextManager[Send]]
T = TypeVar("T")
R = TypeVar("R")


def repeat(enqueue: Callable[[], object]) -> Send:
    """A :data:`Send` for a system whose enqueue is one blocking call."""

    def send(n: int) -> None:
        for _ in range(n):
            enqueue()

    return send


@contextmanager
def async_sender(
    connect: Callable[[], Awaitable[T]],
    enqueue: Callable[[T], Awaitable[object]],
    close: Callable[[T], Awaitable[object]],
) -> Iterator[Send]:
    """A :data:`Send` for an async system: each enqueue awaited before the next, on one
    event loop that lives as long as the context (so its connections are reused)."""
    with asyncio.Runner() as runner:
        handle = runner.run(_call(connect))

        async def many(n: int) -> None:
            for _ in range(n):
                await enqueue(handle)

        try:
            yield lambda n: runner.run(many(n))
        finally:
            runner.run(_call(close, handle))


async def _call(fn: Callable[..., Awaitable[R]], *args: Any) -> R:
    return await fn(*args)


def delete_keys(db: int, *patterns: str) -> int:
    """Delete the keys of Redis ``db`` matching ``patterns`` (SCAN + DEL, never a flush).

    Every pattern must contain :data:`TAG`: this only ever removes the benchmark's keys.
    """
    import redis

    assert patterns and all(TAG in p for p in patterns), patterns
    r = redis.Redis(db=db)
    deleted = 0
    try:
        for pattern in patterns:
            batch = list(r.scan_iter(match=pattern, count=1000))
            for i in range(0, len(batch), 1000):
                deleted += r.delete(*batch[i : i + 1000])
    finally:
        r.close()
    return deleted


def _wait(counter: str, target: int, worker: subprocess.Popen[bytes], log: Path) -> None:
    import redis

    r = redis.Redis()
    deadline = time.monotonic() + TIMEOUT
    try:
        while int(r.get(counter) or 0) < target:
            if worker.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"worker exited {worker.returncode}: {' | '.join(tail)}")
            if time.monotonic() > deadline:
                done = int(r.get(counter) or 0)
                raise TimeoutError(
                    f"{done} of {target} jobs done {TIMEOUT:g} s after the last enqueue"
                )
            time.sleep(0.005)
    finally:
        r.close()


@contextmanager
def _worker(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=os.getcwd())
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(
    peer: str, worker: list[str], client: Client, env: dict[str, str] | None = None
) -> float:
    """Seconds from the first of N enqueues to the last job done, for one system.

    Args:
        peer: the system's name in ``bench/_queue_jobs.py`` (``BENCH_PEER``).
        worker: the worker's command line.
        client: given the reloaded ``bench._queue_jobs``, a context manager yielding the
            :data:`Send` that enqueues from this process.
        env: more environment for both this process' job module and the worker.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"{TAG}-{peer}-"))
    counter = f"{TAG}:{peer}:done"
    extra = {
        "BENCH_PEER": peer,
        "BENCH_COUNTER": counter,
        "BENCH_HUEY_DB": str(tmp / "huey.db"),
        **(env or {}),
    }
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    import redis

    r = redis.Redis()
    try:
        import bench._queue_jobs as jobs

        jobs = importlib.reload(jobs)  # define this peer's jobs here too
        r.delete(counter)
        process_env = {**os.environ, "PYTHONPATH": os.getcwd()}
        with client(jobs) as send, _worker(worker, process_env, tmp / "worker.log") as process:
            send(1)  # warm-up job: the worker is up once it is done
            _wait(counter, 1, process, tmp / "worker.log")
            r.delete(counter)
            start = time.perf_counter()
            send(N)
            _wait(counter, N, process, tmp / "worker.log")
            return time.perf_counter() - start
    finally:
        r.delete(counter)
        r.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(tmp, ignore_errors=True)
