"""Jobs: work with JSON arguments, run now, after the response, in a new process or
on the durable queue, with ``tries``, ``backoff``, ``timeout`` and ``failed()``.

``Job`` and ``job`` are re-exported from :mod:`afterward`; the rest is for people
building connections (see :mod:`afterward.jobs._connections` for the seam) and tests.
"""

from afterward.jobs._background import BackgroundConnection
from afterward.jobs._connections import (
    Connection,
    get_connection,
    register_connection,
    unregister_connection,
)
from afterward.jobs._deferred import DeferredConnection, move_pending_to_queue
from afterward.jobs._job import Job, JobFunction, dispatch_with, job
from afterward.jobs._options import JobOptions
from afterward.jobs._runner import (
    SyncConnection,
    attempt,
    current_payload,
    retry_delay,
    run_failed,
    run_payload,
)
from afterward.jobs._serialize import JobPayload

__all__ = [
    "BackgroundConnection",
    "Connection",
    "DeferredConnection",
    "Job",
    "JobFunction",
    "JobOptions",
    "JobPayload",
    "SyncConnection",
    "attempt",
    "current_payload",
    "dispatch_with",
    "get_connection",
    "job",
    "move_pending_to_queue",
    "register_connection",
    "retry_delay",
    "run_failed",
    "run_payload",
    "unregister_connection",
]

register_connection("sync", SyncConnection())
register_connection("deferred", DeferredConnection())
register_connection("background", BackgroundConnection())
