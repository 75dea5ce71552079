"""What crosses the seam between the bus and a backend: plain, frozen records.

The bus builds :class:`AppendRecord` and :class:`Done`; a backend hands back
:class:`StoredEvent` and :class:`StoredDeadLetter`. :class:`Attempt` is one step of
a group's history, for backends that keep flows. The work queue's are
:class:`QueuedJob`, :class:`Reservation`, :class:`StoredFailedJob` and
:class:`QueueDepth`. None of them knows a driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from afterward.events._envelope import Event

__all__ = [
    "AppendRecord",
    "Attempt",
    "Done",
    "Headers",
    "Pruned",
    "QueueDepth",
    "QueuedJob",
    "Reservation",
    "StoredDeadLetter",
    "StoredEvent",
    "StoredFailedJob",
    "StoredSchema",
    "TopicStorage",
    "worker_died",
]


#: Record headers as every backend stores them: (name, value) pairs, in order.
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class AppendRecord:
    """An event ready to append: the bus has validated and encoded it.

    On the wire (Kafka, Redis, PostgreSQL) a record is its ``value`` (the event's data
    as JSON), its ``headers`` (the CloudEvents attributes and the event's own headers,
    see :mod:`afterward.events._wire`) and its key. A backend with a format of its own
    (SQLite) may store ``event``'s fields instead.

    Attributes:
        event: the event.
        value: the record value: the event's data as UTF-8 JSON.
        headers: the record headers.
    """

    event: Event
    value: bytes
    headers: Headers

    @property
    def topic(self) -> str:
        """The topic name (already validated)."""
        return self.event.topic

    @property
    def key(self) -> str | None:
        """The partition key, or ``None`` (the backend picks any partition)."""
        return self.event.key

    @property
    def event_id(self) -> str:
        """The event's ID."""
        return self.event.id

    @property
    def timestamp(self) -> float:
        """``occurred_at`` as a POSIX timestamp, for ``offsets_for_time``."""
        return self.event.occurred_at.timestamp()

    @property
    def correlation_id(self) -> str | None:
        """The correlation ID, for backends that index flows."""
        return self.event.correlation_id


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A record as read back from the log.

    Attributes:
        topic: its topic.
        partition: its partition.
        offset: its offset there.
        value: the record value (bytes, as stored).
        headers: the record headers.
        key: the record key (``str``; a non-UTF-8 key stays ``bytes``), or ``None``.
        timestamp: the broker's timestamp (POSIX seconds), when it keeps one.
        event: the event already decoded, for a backend that stores events in a format
            of its own (SQLite): the bus then skips decoding the headers.
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    headers: Headers = ()
    key: str | bytes | None = None
    timestamp: float | None = None
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """One event a group finished with, to record in a commit.

    Attributes:
        event_id: recorded as processed when ``processed`` is true.
        key: with ``version``: raise the group's known version for (topic, key).
        version: the event's version, or ``None``.
        processed: false for events that were dead-lettered (the position moves past
            them but their ID stays unprocessed, so a dead-letter retry can run them).
    """

    event_id: str
    key: str | None = None
    version: int | None = None
    processed: bool = True


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as the backend stores it.

    Attributes:
        id: the letter's own ID.
        group: the group whose handler gave up.
        record: the record as it was read (value, headers, key, where it sat).
        error: why (``"ExceptionType: message"``).
        traceback: the last failure's traceback.
        attempts: handler runs made.
        failed_at: when it was given up (aware, UTC).
    """

    id: str
    group: str
    record: StoredEvent
    error: str
    traceback: str
    attempts: int
    failed_at: datetime

    @property
    def topic(self) -> str:
        """The record's topic."""
        return self.record.topic


@dataclass(frozen=True, slots=True)
class Attempt:
    """One step of a consumer group with one event, as the bus recorded it.

    Attributes:
        correlation_id: the event's correlation ID.
        group: the consumer group.
        topic: the event's topic.
        event_id: the event's ID.
        attempt: the handler run it was (1-based; for skips, the attempt the event
            carried, usually 1).
        outcome: ``"handled"``, ``"failed"`` (a run that raised; a retry follows unless
            a ``"dead_lettered"`` step does), ``"dead_lettered"``, ``"duplicate"``
            (skipped: the group had processed that ID) or ``"stale"`` (skipped: the
            group had handled a higher version of the key).
        at: when it happened (aware, UTC).
        error: ``"ExceptionType: message"`` for ``failed`` and ``dead_lettered``.
    """

    correlation_id: str
    group: str
    topic: str
    event_id: str
    attempt: int
    outcome: str
    at: datetime
    error: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job as a work queue stores it (see :class:`~afterward.events._protocols.WorkQueue`).

    Attributes:
        id: the dispatch's ID (``JobPayload.id``): unique in its queue; enqueueing an ID
            the queue holds already does nothing (an outbox relay may repeat).
        queue: the queue's name.
        payload: the ``JobPayload`` as JSON, opaque to the backend.
        due: POSIX time before which it must not start.
        priority: among due jobs, higher runs first (then earlier due, then FIFO).
        tries: attempts allowed in total: a delivery beyond that fails the job.
        correlation_id: the dispatching request's correlation ID.
    """

    id: str
    queue: str
    payload: bytes
    due: float
    priority: int = 0
    tries: int = 1
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A job a worker reserved: it holds it under a lease until it acks, retries,
    fails or releases it.

    Attributes:
        job: the job (its payload as last stored: a retry stores the next attempt's).
        attempt: this delivery's attempt number, from 1, recorded before it runs.
    """

    job: QueuedJob
    attempt: int


@dataclass(frozen=True, slots=True)
class StoredFailedJob:
    """A job that used up its tries, as the failed-jobs store keeps it.

    Attributes:
        job: the job (its payload as of the last attempt).
        attempts: attempts made.
        error: ``"ExceptionType: message"`` of the last attempt (or why it was given up:
            the worker died during it).
        traceback: the last attempt's traceback (empty when the worker died).
        failed_at: when it was given up (aware, UTC).
    """

    job: QueuedJob
    attempts: int
    error: str
    traceback: str
    failed_at: datetime


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """How many jobs of a queue are in each state, now.

    Attributes:
        ready: due, waiting for a worker.
        delayed: not due yet (``delay=``, ``at=``, a retry's backoff).
        running: reserved by a worker (by worker name in ``workers``).
        failed: in the failed-jobs store.
        workers: running jobs per worker name.
    """

    ready: int = 0
    delayed: int = 0
    running: int = 0
    failed: int = 0
    workers: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredSchema:
    """One version of a topic's schema in the shared registry.

    Attributes:
        topic: the topic.
        version: 1, 2, ... per topic.
        schema: the JSON Schema, as compact JSON text.
        compatibility: the mode it was checked with (``backward``, ``forward``,
            ``full``, ``none``).
        registered_at: when (aware, UTC).
    """

    topic: str
    version: int
    schema: str
    compatibility: str
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning pass removed (see ``EventBus.prune``).

    Attributes:
        events: events past their topic's retention.
        processed: processed-ID records older than the retention.
        versions: key versions older than the retention.
        history: flow history entries (attempts) older than the retention.
    """

    events: int = 0
    processed: int = 0
    versions: int = 0
    history: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(
            self.events + other.events,
            self.processed + other.processed,
            self.versions + other.versions,
            self.history + other.history,
        )


@dataclass(frozen=True, slots=True)
class TopicStorage:
    """How much a topic holds, for operators (``EventBus.storage``).

    Attributes:
        events: events stored.
        bytes: their size as stored (values and headers; an estimate where the backend
            cannot say exactly).
        oldest: the oldest event's time (aware, UTC), or ``None`` when empty.
    """

    events: int
    bytes: int
    oldest: datetime | None


def worker_died(attempt: int, tries: int) -> str:
    """The error of a job given up because its worker died (its lease ran out) during
    its last try: every backend stores the same words."""
    return (
        f"WorkerDied: the worker running attempt {attempt} of {tries} stopped renewing "
        "its lease (killed, crashed or out of memory) before the attempt ended"
    )
