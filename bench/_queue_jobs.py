"""The no-op job of the durable-jobs benchmark, for each system measured.

Every job does the same tiny thing: ``INCR`` a Redis counter, which is how the
benchmark sees it done. ``BENCH_PEER`` selects the system so a worker process imports
only its own library; ``BENCH_COUNTER`` names the counter.
"""

from __future__ import annotations

import os
from typing import Any

import redis

__all__ = ["COUNTER", "bump"]

COUNTER = os.environ.get("BENCH_COUNTER", "afterward-bench:done")
PEER = os.environ.get("BENCH_PEER", "afterward")
_redis = redis.Redis()


def bump() -> None:
    """The job's whole effect."""
    _redis.incr(COUNTER)


app: Any = None
huey: Any = None

if PEER == "afterward":
    from afterward import job

    @job(tries=3)
    def noop() -> None:
        """afterward's job: a function importable by its path."""
        bump()

elif PEER == "celery":
    from celery import Celery

    app = Celery("bench", broker="redis://127.0.0.1:6379/5")
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)
    noop = app.task(name="noop")(bump)
elif PEER == "dramatiq":
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq.set_broker(RedisBroker(url="redis://127.0.0.1:6379/6"))
    noop = dramatiq.actor(bump, max_retries=2)
elif PEER == "rq":
    noop = bump
elif PEER == "huey":
    from huey import SqliteHuey

    huey = SqliteHuey(filename=os.environ["BENCH_HUEY_DB"])
    noop = huey.task()(bump)
