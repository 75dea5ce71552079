"""How a queue job travels: names, and the record that carries it to the work queue.

A dispatch becomes an :class:`~afterward.events._records.AppendRecord` on the topic
``afterward.jobs.<queue>`` (an envelope whose data is the ``JobPayload``), so it goes
through the same paths as an event: the transactional outbox, the sync twin, the size
cap. The bus hands such records to the backend's work queue as
:class:`~afterward.events._records.QueuedJob` (:func:`queued_job`), not to the log.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from afterward._exceptions import DispatchError
from afterward.events._envelope import Event
from afterward.events._records import AppendRecord, Attempt, QueuedJob
from afterward.events._wire import record_of
from afterward.jobs import JobPayload

__all__ = [
    "JOB_TOPIC_PREFIX",
    "WORKER_GROUP_PREFIX",
    "is_job_record",
    "is_worker_group",
    "job_attempt",
    "job_record",
    "job_topic",
    "payload_of",
    "queued_attempt",
    "queued_job",
    "worker_group",
]

#: Jobs of queue ``q`` travel on ``afterward.jobs.q`` (the outbox, Kafka's queue topic).
JOB_TOPIC_PREFIX = "afterward.jobs."
#: The workers of queue ``q`` are ``afterward.worker.q`` in flows and on Kafka.
WORKER_GROUP_PREFIX = "afterward.worker."


def job_topic(queue: str) -> str:
    """The topic carrying the jobs of ``queue`` (``afterward.jobs.<queue>``)."""
    return JOB_TOPIC_PREFIX + queue


def worker_group(queue: str) -> str:
    """The name of the workers of ``queue`` (``afterward.worker.<queue>``)."""
    return WORKER_GROUP_PREFIX + queue


def is_worker_group(group: str) -> bool:
    """Whether ``group`` names the workers of a queue.

    Example:
        >>> is_worker_group("afterward.worker.default"), is_worker_group("billing")
        (True, False)
    """
    return group.startswith(WORKER_GROUP_PREFIX)


def is_job_record(record: AppendRecord) -> bool:
    """Whether ``record`` carries a queue job (not an event)."""
    return record.topic.startswith(JOB_TOPIC_PREFIX)


def job_record(payload: JobPayload, queue: str) -> AppendRecord:
    """The record that carries ``payload`` to ``queue``."""
    event = Event(
        id=payload.id,
        topic=job_topic(queue),
        data=payload.as_dict(),
        correlation_id=payload.correlation_id,
        occurred_at=datetime.now(UTC),
    )
    return record_of(event, "afterward")


def job_attempt(
    queue: str,
    job_id: str,
    number: int,
    cid: str | None,
    outcome: str,
    at: datetime,
    error: str | None = None,
) -> Attempt:
    """A step of a job in the flow history: its worker group, ``<job id>:<attempt>``."""
    return Attempt(
        cid or "",
        worker_group(queue),
        job_topic(queue),
        f"{job_id}:{number}",
        number,
        outcome,
        at,
        error,
    )


def queued_attempt(queue: str, job_id: str, number: int, cid: str | None, at: datetime) -> Attempt:
    """The flow step of a job's attempt ``number`` waiting on ``queue``."""
    return job_attempt(queue, job_id, number, cid, "queued", at)


def payload_of(data: bytes) -> JobPayload:
    """The ``JobPayload`` a queued job's ``payload`` holds.

    Raises:
        DispatchError: it is not one.
    """
    return JobPayload.from_json(data)


def queued_job(record: AppendRecord) -> QueuedJob:
    """The work-queue job a :func:`job_record` carries (due at its ``available_at``, or
    now)."""
    try:
        payload = JobPayload(**record.event.data)
    except TypeError as exc:
        raise DispatchError(f"not a job payload on {record.topic!r}: {exc}") from exc
    return QueuedJob(
        id=payload.id,
        queue=record.topic.removeprefix(JOB_TOPIC_PREFIX),
        payload=payload.to_json().encode(),
        due=payload.available_at or time.time(),
        priority=payload.priority,
        tries=payload.tries,
        correlation_id=payload.correlation_id,
    )
