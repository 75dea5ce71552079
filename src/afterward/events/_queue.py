"""The durable ``queue`` job connection and the worker loop behind ``afterward worker``.

Jobs are events: ``dispatch(connection="queue")`` publishes the job's JSON payload to
the topic ``afterward.jobs.<queue>`` (through the outbox when a transaction is open).
A worker consumes it in the group ``afterward.worker.<queue>``:

- one attempt per delivery (``afterward.jobs.run_payload``: timeout, defer scope,
  correlation ID); a failed attempt with tries left is published again as the next
  attempt, due after its backoff; the last failure calls the job's ``failed()`` and
  lands in the failed-jobs store (the group's dead letters) with its traceback;
- ``delay=`` and backoff make an attempt due later: the worker waits for it in its
  slot (``--concurrency`` slots run at once);
- a worker that dies mid-job stops renewing its claim on the queue; after the lease
  (``claim_ttl``) another worker takes over from the last committed position, so the
  jobs in flight are delivered again. An attempt's event ID is ``<job id>:<attempt>``,
  so a redelivered attempt is skipped once it was recorded; a job whose effect must
  not repeat after a crash between its commit and the worker's should record its
  ``payload.id`` in the same transaction as the effect (see ``docs/events.md``).

Several worker processes on one queue share it by failover (one consumes at a time,
the others take over when it dies): scale a worker with ``--concurrency``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from afterward._exceptions import ConfigError, NotFoundError
from afterward._stats import incr
from afterward.events._envelope import DeadLetter, Event
from afterward.events._subscription import Handler
from afterward.jobs import JobPayload, register_connection, run_failed, run_payload

__all__ = [
    "JOB_TOPIC_PREFIX",
    "WORKER_GROUP_PREFIX",
    "FailedJob",
    "JobBus",
    "QueueConnection",
    "failed_jobs",
    "is_worker_group",
    "job_topic",
    "retry_failed_job",
    "subscribe_worker",
    "use_for_jobs",
    "worker_group",
]

#: Topics of queue jobs are ``afterward.jobs.<queue>``.
JOB_TOPIC_PREFIX = "afterward.jobs."
#: Groups of queue workers are ``afterward.worker.<queue>``; their dead letters are the
#: failed jobs.
WORKER_GROUP_PREFIX = "afterward.worker."


class JobBus(Protocol):
    """What the queue needs of an :class:`~afterward.EventBus`."""

    async def publish(
        self,
        topic: str,
        data: Any,
        key: str | None = None,
        version: int | None = None,
        id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Event:
        """Publish one event."""
        ...

    def publish_sync(
        self,
        topic: str,
        data: Any,
        key: str | None = None,
        version: int | None = None,
        id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Event:
        """Publish one event, from sync code."""
        ...

    def subscribe(
        self,
        topic: str,
        *,
        group: str,
        retries: int = 3,
        backoff: float | Iterable[float] = (0.1, 1, 5),
        concurrency: int = 1,
    ) -> Callable[[Handler], Handler]:
        """Subscribe a handler."""
        ...

    async def dead_letters_async(self, group: str | None = None) -> list[DeadLetter]:
        """List dead letters."""
        ...

    async def discard_dead_letter(self, dead_letter_id: str) -> None:
        """Delete a dead letter."""


def job_topic(queue: str) -> str:
    """The topic holding the jobs of ``queue`` (``afterward.jobs.<queue>``)."""
    return JOB_TOPIC_PREFIX + queue


def worker_group(queue: str) -> str:
    """The consumer group of the workers of ``queue`` (``afterward.worker.<queue>``)."""
    return WORKER_GROUP_PREFIX + queue


def is_worker_group(group: str) -> bool:
    """Whether ``group`` is a queue worker group (its dead letters are failed jobs).

    Example:
        >>> is_worker_group("afterward.worker.default"), is_worker_group("billing")
        (True, False)
    """
    return group.startswith(WORKER_GROUP_PREFIX)


@dataclass(frozen=True)
class FailedJob:
    """A queue job that used up its tries.

    Attributes:
        id: the failed job's ID in the store (for ``retry_failed_job``/``discard``).
        job_id: the dispatch's ID (``JobPayload.id``).
        queue: the queue it ran on.
        path: ``module:QualName`` of the job.
        args: its positional arguments.
        kwargs: its keyword arguments.
        attempts: attempts made.
        error: ``"ExceptionType: message"`` of the last attempt.
        traceback: the last attempt's traceback.
        failed_at: when the last attempt failed.
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


class QueueConnection:
    """The ``"queue"`` job connection: publishes jobs to a bus (see the module doc)."""

    def __init__(self, bus: JobBus, queue: str = "default") -> None:
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"queue must be a non-empty str, got {queue!r}")
        self.bus = bus
        self.queue = queue

    def dispatch(self, payload: JobPayload) -> None:
        """Publish ``payload`` (blocks for one bus write; goes to the outbox in a
        transaction)."""
        self.bus.publish_sync(
            job_topic(self.queue), asdict(payload), id=_event_id(payload, "0"), headers=_round("0")
        )


def _round(name: str) -> dict[str, str]:
    return {"afterward-round": name}


def _event_id(payload: JobPayload, round_: str) -> str:
    # A failed job put back by retry_failed_job starts a new round of attempts.
    return f"{payload.id}:{round_}:{payload.attempt}"


def use_for_jobs(bus: JobBus, queue: str = "default") -> QueueConnection:
    """Register ``bus`` as the ``"queue"`` job connection (jobs go to ``queue``)."""
    connection = QueueConnection(bus, queue)
    register_connection("queue", connection)
    return connection


def subscribe_worker(bus: JobBus, queue: str = "default", concurrency: int = 1) -> str:
    """Subscribe the job runner of ``queue`` on ``bus``; return the worker group.

    What ``afterward worker`` does: after it, ``bus.run()`` (or ``drain()``) runs the
    queue's jobs in this process, in the group ``afterward.worker.<queue>``, up to
    ``concurrency`` at once. Handy in tests and in apps that run their own worker.

    Example:
        >>> bus.use_for_jobs("emails")           # dispatch(connection="queue") goes here
        >>> subscribe_worker(bus, "emails")
        'afterward.worker.emails'
        >>> await bus.drain()                    # runs the jobs dispatched so far

    Raises:
        ConfigError: ``queue`` is not a non-empty str, or a worker is already
            subscribed for it on this bus.
    """
    if not isinstance(queue, str) or not queue:
        raise ConfigError(f"queue must be a non-empty str, got {queue!r}")
    topic = job_topic(queue)

    async def run_job(event: Event) -> None:
        payload = JobPayload.from_json(json.dumps(event.data))
        wait = payload.available_at - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await run_payload(payload)
        except Exception as exc:
            if payload.attempt < payload.tries:
                following = replace(
                    payload,
                    attempt=payload.attempt + 1,
                    available_at=time.time() + payload.backoff_after(payload.attempt),
                )
                round_ = event.headers.get("afterward-round", "0")
                await bus.publish(
                    topic,
                    asdict(following),
                    id=_event_id(following, round_),
                    headers=_round(round_),
                )
                incr("jobs.retried")
                return
            incr("jobs.failed")
            await run_failed(payload, exc)
            raise
        incr("jobs.completed")

    run_job.__qualname__ = f"job runner of queue {queue!r}"
    group = worker_group(queue)
    bus.subscribe(topic, group=group, retries=0, backoff=(), concurrency=concurrency)(run_job)
    return group


async def failed_jobs(bus: JobBus, queue: str | None = None) -> list[FailedJob]:
    """Failed jobs (of ``queue`` when given), oldest first."""
    found = []
    for letter in await bus.dead_letters_async():
        if not is_worker_group(letter.group):
            continue
        name = letter.group.removeprefix(WORKER_GROUP_PREFIX)
        if queue is not None and name != queue:
            continue
        data = letter.event.data
        found.append(
            FailedJob(
                id=letter.id,
                job_id=data["id"],
                queue=name,
                path=data["path"],
                args=data["args"],
                kwargs=data["kwargs"],
                attempts=data["attempt"],
                error=letter.error,
                traceback=letter.traceback,
                failed_at=letter.failed_at,
                correlation_id=data["correlation_id"],
            )
        )
    return found


async def retry_failed_job(bus: JobBus, failed_id: str) -> None:
    """Put a failed job back on its queue with all its tries, and drop it from the store.

    Raises:
        NotFoundError: no failed job has that ID.
    """
    for job in await failed_jobs(bus):
        if job.id == failed_id:
            letter = next(d for d in await bus.dead_letters_async() if d.id == failed_id)
            payload = JobPayload.from_json(json.dumps(letter.event.data))
            fresh = replace(payload, attempt=1, available_at=0.0)
            round_ = failed_id[:12]
            await bus.publish(
                job_topic(job.queue),
                asdict(fresh),
                id=_event_id(fresh, round_),
                headers=_round(round_),
            )
            await bus.discard_dead_letter(failed_id)
            return
    raise NotFoundError(f"no failed job with ID {failed_id!r}")
