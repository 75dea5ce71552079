"""The no-op job of the durable-jobs benchmark, for each system measured.

Every job does the same tiny thing: ``INCR`` a Redis counter (awaited on an asyncio
client in the async systems), which is how the benchmark sees it done. ``BENCH_PEER``
selects the system so a worker process imports only its own library; ``BENCH_COUNTER``
names the counter. Every queue, namespace and key prefix holds ``afterward-bench`` (see
``bench/_queue_run.py``), so the benchmark can delete exactly what it created.
"""

from __future__ import annotations

import os
from typing import Any

import redis
import redis.asyncio

__all__ = ["COUNTER", "abump", "bump"]

COUNTER = os.environ.get("BENCH_COUNTER", "afterward-bench:done")
PEER = os.environ.get("BENCH_PEER", "afterward")
REDIS = "redis://127.0.0.1:6379"
_redis = redis.Redis()
_aredis: Any = None

# Where each Redis-brokered system keeps its keys: (database, name or prefix).
CELERY = (5, "afterward-bench-celery")
DRAMATIQ = (6, "afterward-bench-dramatiq")
RQ = (7, "afterward-bench-rq")
ARQ = (8, "afterward-bench-arq")
SAQ = (9, "afterward-bench-saq")


def bump() -> None:
    """The job's whole effect."""
    _redis.incr(COUNTER)


async def abump() -> None:
    """The job's whole effect, for an asyncio worker (the client made on its loop)."""
    global _aredis
    if _aredis is None:
        _aredis = redis.asyncio.Redis()
    await _aredis.incr(COUNTER)


app: Any = None
huey: Any = None
saq_settings: Any = None

if PEER == "afterward":
    from afterward import job

    @job(tries=3)
    def noop() -> None:
        """afterward's job: a function importable by its path."""
        bump()

elif PEER == "celery":
    from celery import Celery

    app = Celery("bench", broker=f"{REDIS}/{CELERY[0]}")
    app.conf.update(
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        task_default_queue=CELERY[1],
        # kombu puts this before every key it writes (queues, bindings, unacked sets).
        broker_transport_options={"global_keyprefix": f"{CELERY[1]}:"},
    )
    noop = app.task(name="noop")(bump)
elif PEER == "dramatiq":
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq.set_broker(RedisBroker(url=f"{REDIS}/{DRAMATIQ[0]}", namespace=DRAMATIQ[1]))
    noop = dramatiq.actor(bump, max_retries=2)
elif PEER == "rq":
    noop = bump
elif PEER == "huey":
    from huey import SqliteHuey

    huey = SqliteHuey(filename=os.environ["BENCH_HUEY_DB"])
    noop = huey.task()(bump)
elif PEER == "arq":
    from arq.connections import RedisSettings

    async def noop(ctx: dict[str, Any]) -> None:
        """arq's job: a coroutine taking the worker's context."""
        await abump()

    class WorkerSettings:
        """``arq bench._queue_jobs.WorkerSettings``."""

        functions = [noop]  # noqa: RUF012 - arq reads class attributes
        redis_settings = RedisSettings(database=ARQ[0])
        queue_name = ARQ[1]
        max_jobs = 4

elif PEER == "saq":
    from saq import Queue

    async def noop(ctx: dict[str, Any]) -> None:
        """SAQ's job: a coroutine taking the worker's context."""
        await abump()

    saq_settings = {
        "queue": Queue.from_url(f"{REDIS}/{SAQ[0]}", name=SAQ[1]),
        "functions": [noop],
        "concurrency": 4,
    }
elif PEER == "procrastinate":
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PG_DSN"])
    )

    @app.task(name="noop")
    async def noop() -> None:
        """Procrastinate's job: an async task (run on the worker's loop)."""
        await abump()
