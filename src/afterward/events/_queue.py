"""The durable ``queue`` job connection: a work queue in the bus's backend.

``dispatch(connection="queue")`` enqueues the job (through the outbox inside a database
transaction) with its due time (``delay=``, ``at=``) and ``priority=``. Workers
(``afterward worker``, or ``bus.run()``/``drain()`` after :func:`subscribe_worker`)
compete for it: each reserves what it has free slots for, under a lease it renews while
the job runs, and ends each job on its own (done, due again after its backoff, or
failed). A worker that dies loses only the jobs it was running; they are delivered again
once their lease runs out, and the delivery that was a job's last try fails it (its
worker died). See :mod:`afterward.events._worker` and ``docs/jobs.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from afterward._exceptions import ConfigError, DispatchError, NotFoundError, PublishError
from afterward.events._core import BusCore, WorkerSpec
from afterward.events._job_wire import job_record, payload_of, worker_group
from afterward.events._outbox import write_to_outbox
from afterward.events._records import QueueDepth, StoredFailedJob
from afterward.events._work_queue import FailedJobStore, WorkQueue
from afterward.jobs import JobPayload, register_connection

__all__ = [
    "FailedJob",
    "QueueConnection",
    "add_worker",
    "discard_failed_job",
    "failed_jobs",
    "queue_of",
    "queue_stats",
    "retry_failed_job",
    "use_for_jobs",
    "worker_spec",
]


def _check_queue(queue: object) -> str:
    if not isinstance(queue, str) or not queue or len(queue) > 200:
        raise ConfigError(f"queue must be a non-empty str of <= 200 chars, got {queue!r}")
    return queue


def queue_of(core: BusCore) -> tuple[WorkQueue, FailedJobStore]:
    """The backend's work queue and failed-jobs store.

    Raises:
        ConfigError: the backend has none.
    """
    backend = core.backend
    if backend.queue is None or backend.failed is None:
        raise ConfigError(f"the {backend.scheme}:// backend has no work queue")
    return backend.queue, backend.failed


@dataclass(frozen=True)
class FailedJob:
    """A queue job that used up its tries.

    Attributes:
        id: the failed job's ID (for ``retry_failed_job``/``discard_failed_job``): the
            dispatch's ID.
        job_id: the dispatch's ID (``JobPayload.id``).
        queue: the queue it ran on.
        path: ``module:QualName`` of the job.
        args: its positional arguments.
        kwargs: its keyword arguments.
        attempts: attempts made.
        error: ``"ExceptionType: message"`` of the last attempt, or why it was given up
            (``WorkerDied: ...`` when its worker died during the last try).
        traceback: the last attempt's traceback (empty when the worker died).
        failed_at: when it was given up.
        correlation_id: the dispatching request's correlation ID.
    """

    id: str
    job_id: str
    queue: str
    path: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    error: str
    traceback: str
    failed_at: datetime
    correlation_id: str


def _failed_job(stored: StoredFailedJob) -> FailedJob:
    payload = payload_of(stored.job.payload)
    return FailedJob(
        id=stored.job.id,
        job_id=payload.id,
        queue=stored.job.queue,
        path=payload.path,
        args=payload.args,
        kwargs=payload.kwargs,
        attempts=stored.attempts,
        error=stored.error,
        traceback=stored.traceback,
        failed_at=stored.failed_at,
        correlation_id=payload.correlation_id,
    )


class QueueConnection:
    """The ``"queue"`` job connection: enqueues jobs on a bus's work queue."""

    def __init__(self, core: BusCore, queue: str = "default") -> None:
        self.core = core
        self.queue = _check_queue(queue)

    def dispatch(self, payload: JobPayload) -> None:
        """Enqueue ``payload`` (blocks for one backend write; goes to the outbox inside
        a transaction).

        Raises:
            DispatchError: the job is over the bus's size cap.
        """
        core = self.core
        record = job_record(payload, self.queue)
        if len(record.value) > core.settings.max_event_bytes:
            raise DispatchError(
                f"job {payload.path} is {len(record.value)} bytes encoded, over the "
                f"{core.settings.max_event_bytes}-byte cap"
            )
        if core.settings.outbox and write_to_outbox(core, [record]):
            return
        try:
            core.sync(core.append_now([record]))
        except PublishError as exc:  # pragma: no cover - the record was checked above
            raise DispatchError(str(exc)) from exc


def use_for_jobs(core: BusCore, queue: str = "default") -> QueueConnection:
    """Register the bus as the ``"queue"`` job connection (jobs go to ``queue``)."""
    connection = QueueConnection(core, queue)
    register_connection("queue", connection)
    return connection


def worker_spec(queue: object, concurrency: object, lease: object, grace: object) -> WorkerSpec:
    """A worker's options, checked.

    Raises:
        ConfigError: a bad queue name, concurrency (int >= 1), lease (seconds > 0) or
            grace (seconds >= 0).
    """
    _check_queue(queue)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
    for name, value, low in (("lease", lease, 0.0), ("grace", grace, -1.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= low:
            bound = "> 0" if low == 0 else ">= 0"
            raise ConfigError(f"{name} must be seconds {bound}, got {value!r}")
    return WorkerSpec(str(queue), int(concurrency), float(lease), float(grace))  # type: ignore[arg-type]


def add_worker(core: BusCore, spec: WorkerSpec) -> str:
    """Have the bus's ``run()``/``drain()`` run ``spec.queue``'s jobs (see
    :func:`afterward.events.subscribe_worker`); return the worker group's name.

    Raises:
        ConfigError: the backend has no work queue, or a worker for that queue is
            already subscribed.
    """
    if spec.queue in core.workers:
        raise ConfigError(f"a worker for queue {spec.queue!r} is already subscribed on this bus")
    queue_of(core)
    core.workers[spec.queue] = spec
    return worker_group(spec.queue)


async def failed_jobs(core: BusCore, queue: str | None = None) -> list[FailedJob]:
    """Failed jobs (of ``queue`` when given), oldest first."""
    if queue is not None:
        _check_queue(queue)
    _, failed = queue_of(core)
    return [_failed_job(f) for f in await failed.failed_jobs(queue)]


async def retry_failed_job(core: BusCore, failed_id: str) -> None:
    """Put a failed job back on its queue with all its tries, due now.

    Raises:
        NotFoundError: no failed job has that ID.
    """
    _, failed = queue_of(core)
    stored = await failed.failed_job(_check_id(failed_id))
    if stored is None:
        raise NotFoundError(f"no failed job with ID {failed_id!r}")
    fresh = replace(payload_of(stored.job.payload), attempt=1, available_at=0.0)
    job = replace(stored.job, payload=fresh.to_json().encode(), due=time.time())
    if not await failed.requeue_failed_job(failed_id, job):
        raise NotFoundError(f"no failed job with ID {failed_id!r}")


async def discard_failed_job(core: BusCore, failed_id: str) -> None:
    """Delete a failed job for good.

    Raises:
        NotFoundError: no failed job has that ID.
    """
    _, failed = queue_of(core)
    if not await failed.delete_failed_job(_check_id(failed_id)):
        raise NotFoundError(f"no failed job with ID {failed_id!r}")


async def queue_stats(core: BusCore, queue: str | None = None) -> dict[str, QueueDepth]:
    """Jobs per state, per queue (of ``queue`` when given)."""
    if queue is not None:
        _check_queue(queue)
    jobs, _ = queue_of(core)
    return await jobs.depth(queue)


def _check_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a failed job ID must be a non-empty str, got {value!r}")
    return value
