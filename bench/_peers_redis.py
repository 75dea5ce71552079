"""The Redis-brokered peers of the durable-jobs benchmark: Celery, Dramatiq, RQ, arq, SAQ.

Each keeps its keys under a name of its own (database and name in
``bench/_queue_jobs.py``); every measurement deletes exactly those keys before and
after, never flushing a database:

- Celery: kombu's ``global_keyprefix`` transport option prefixes every key it writes.
- Dramatiq: ``RedisBroker(namespace=...)``.
- RQ: its key prefix ``rq:`` is fixed, so the queue, the worker and every job ID are
  named ``afterward-bench-rq...``; the benchmark's members are removed from RQ's shared
  ``rq:queues`` and ``rq:workers`` sets (its other users' members stay). RQ's worker
  also sets ``rq:clean_groups``, a lock shared by every RQ worker of the database; it
  is left to expire (10 minutes).
- arq: its key prefixes (``arq:job:``, ``arq:result:``...) are fixed, so the queue and
  every job ID are named ``afterward-bench-arq...``.
- SAQ: every key is ``saq:<queue name>:...`` or ``saq:job:<queue name>:...``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from bench._queue_jobs import ARQ, CELERY, DRAMATIQ, RQ, SAQ
from bench._queue_run import BIN, REDIS, Send, async_sender, delete_keys, measure, repeat

__all__ = ["PEERS"]


def _celery() -> float:
    db, name = CELERY
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
        name,
        "--loglevel",
        "WARNING",
    ]

    @contextmanager
    def client(jobs: ModuleType) -> Iterator[Send]:
        yield repeat(jobs.noop.delay)

    delete_keys(db, f"{name}:*")
    try:
        return measure("celery", worker, client)
    finally:
        delete_keys(db, f"{name}:*")


def _dramatiq() -> float:
    db, name = DRAMATIQ
    worker = [str(BIN / "dramatiq"), "bench._queue_jobs", "--processes", "1", "--threads", "4"]

    @contextmanager
    def client(jobs: ModuleType) -> Iterator[Send]:
        yield repeat(jobs.noop.send)

    delete_keys(db, f"{name}:*")
    try:
        return measure("dramatiq", worker, client)
    finally:
        delete_keys(db, f"{name}:*")


def _rq() -> float:
    import redis
    from rq import Queue

    db, name = RQ
    run = uuid.uuid4().hex[:8]
    worker_name = f"{name}-worker-{run}"
    worker = [
        str(BIN / "rq"),
        "worker",
        name,
        "--url",
        f"{REDIS}/{db}",
        "--worker-class",
        "rq.worker.SimpleWorker",
        "--name",
        worker_name,
        "--quiet",
    ]
    conn = redis.Redis(db=db)

    @contextmanager
    def client(jobs: ModuleType) -> Iterator[Send]:
        queue = Queue(name, connection=conn)
        ids = iter(range(1 << 62))
        yield repeat(lambda: queue.enqueue(jobs.bump, job_id=f"{name}-{run}-{next(ids)}"))

    try:
        return measure("rq", worker, client)
    finally:
        delete_keys(db, f"rq:*{name}*")
        conn.srem("rq:queues", f"rq:queue:{name}")
        conn.srem("rq:workers", f"rq:worker:{worker_name}")
        conn.close()


def _arq() -> float:
    from arq import create_pool
    from arq.connections import RedisSettings

    db, name = ARQ
    run = uuid.uuid4().hex[:8]
    ids = iter(range(1 << 62))

    async def connect() -> Any:
        return await create_pool(RedisSettings(database=db), default_queue_name=name)

    async def enqueue(pool: Any) -> None:
        await pool.enqueue_job("noop", _job_id=f"{name}-{run}-{next(ids)}")

    async def close(pool: Any) -> None:
        await pool.aclose()

    worker = [str(BIN / "arq"), "bench._queue_jobs.WorkerSettings"]
    try:
        return measure("arq", worker, lambda jobs: async_sender(connect, enqueue, close))
    finally:
        # The queue (and its health-check key), then arq:job:, arq:result:, ... of our IDs.
        delete_keys(db, f"{name}*", f"arq:*:{name}-{run}-*")


def _saq() -> float:
    from saq import Queue

    db, name = SAQ

    async def connect() -> Any:
        queue = Queue.from_url(f"{REDIS}/{db}", name=name)
        await queue.connect()
        return queue

    async def enqueue(queue: Any) -> None:
        await queue.enqueue("noop")

    async def close(queue: Any) -> None:
        await queue.disconnect()

    worker = [str(BIN / "saq"), "bench._queue_jobs.saq_settings"]
    delete_keys(db, f"saq:{name}:*", f"saq:job:{name}:*")
    try:
        return measure("saq", worker, lambda jobs: async_sender(connect, enqueue, close))
    finally:
        delete_keys(db, f"saq:{name}:*", f"saq:job:{name}:*")


PEERS = [
    ("Celery 5, Redis broker, threads pool -c 4 (peer)", _celery),
    ("Dramatiq, Redis broker, 1 process x 4 threads (peer)", _dramatiq),
    ("RQ, Redis, SimpleWorker (peer)", _rq),
    ("arq, Redis, max_jobs=4 (peer)", _arq),
    ("SAQ, Redis, concurrency 4 (peer)", _saq),
]
