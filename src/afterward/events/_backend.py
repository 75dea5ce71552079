"""The event-log protocol every backend implements: a handful of async primitives.

The bus (:mod:`afterward.events._bus`) does the shared work once: envelopes, validation,
schemas, idempotency, the version guard, retries, dead letters, lag and ``on_lag``.
A backend only stores bytes and positions. The in-memory backend
(:mod:`afterward.events.backends.memory`) is the reference implementation; the
conformance suite (``tests/events/test_conformance.py``) runs against every backend.

Vocabulary:

- A *topic* is split into *partitions* (numbered from 0). Events with the same key go
  to the same partition. A backend with one partition per topic is fine.
- An *offset* numbers the events of one partition from 0, in append order.
- A group's *position* in a partition is the offset of the next event it will read
  (Kafka's committed offset); ``end offset - position`` is its lag there.
- *Processed IDs* are the event IDs a group has handled successfully; *key versions*
  are the highest ``version`` a group has handled per (topic, key).

Every primitive may raise :class:`~afterward.BackendError` (or
:class:`~afterward.BackendUnavailable`) and nothing else: backends translate their driver
errors. Coroutines may be awaited from any event loop, including afterward's background
loop (the sync twins run there), so a backend must not bind itself to one loop at
``connect`` or must reconnect per loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

__all__ = [
    "AppendRecord",
    "Attempt",
    "ConnectContext",
    "Done",
    "EventLog",
    "FlowLog",
    "GroupLog",
    "Member",
    "StoredDeadLetter",
    "StoredEvent",
]


@dataclass(frozen=True, slots=True)
class AppendRecord:
    """An event ready to append: the bus has validated and encoded it.

    Attributes:
        topic: the topic name (already validated).
        key: the partition key, or ``None`` (the backend picks any partition).
        event_id: the event's ID (also inside ``payload``).
        timestamp: ``occurred_at`` as a POSIX timestamp, for ``offsets_for_time``.
        payload: the encoded envelope (UTF-8 JSON), opaque to the backend.
        correlation_id: the event's correlation ID (also inside ``payload``), for
            backends that index flows (:class:`FlowLog`); others ignore it.
    """

    topic: str
    key: str | None
    event_id: str
    timestamp: float
    payload: bytes
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log."""

    topic: str
    partition: int
    offset: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """One event a group finished with, to record in :meth:`EventLog.commit`.

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
    """A dead letter as the backend stores it."""

    id: str
    group: str
    topic: str
    payload: bytes
    error: str
    traceback: str
    attempts: int
    failed_at: datetime


class ConnectContext:
    """``async with x:`` for a class with ``connect()``/``aclose()`` (backends, the bus):
    connect on entry, close on exit. A convenience mixin; the protocol does not need it."""

    async def connect(self) -> None:
        """Open what the class needs (its own)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release it (its own)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@runtime_checkable
class EventLog(Protocol):
    """The primitives a backend supplies. All methods are coroutines unless noted."""

    #: URL scheme of the backend (``"sqlite"``, ``"memory"``...), for error messages.
    scheme: str

    async def connect(self) -> None:
        """Open connections and create storage if missing. Idempotent."""

    async def aclose(self) -> None:
        """Release connections. Idempotent; the log may be connected again."""

    async def __aenter__(self) -> EventLog:
        """``connect()`` and return self."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``aclose()``."""

    # -- the log ----------------------------------------------------------------------

    async def append(self, records: Sequence[AppendRecord]) -> None:
        """Append ``records`` atomically (all or none), in order.

        Records with the same topic and key land in the same partition, in the order
        given; across calls, a later ``append`` of the same key is after an earlier one.
        Safe with several processes appending at once.
        """

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        """Return up to ``limit`` events of ``topic`` at or after ``positions``.

        ``positions`` maps partition to offset; a partition missing from it is read from
        offset 0. Within a partition events come in offset order; partitions may be
        interleaved. Returns an empty sequence when nothing is there (never blocks long).
        """

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Return, per partition of ``topic``, the offset the next event will get.

        Every existing partition is listed; ``{}`` for an unknown topic.
        """

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        """Per partition, the offset of the first event with timestamp >= ``since``
        (the end offset when there is none)."""

    # -- groups ---------------------------------------------------------------------

    async def positions(self, group: str, topic: str) -> dict[int, int] | None:
        """Return the group's committed positions in ``topic``, or ``None`` when the
        group has never been registered on that topic."""

    async def register(self, group: str, topic: str, positions: Mapping[int, int]) -> None:
        """Create the group's positions in ``topic`` if it has none (else do nothing)."""

    async def groups(self) -> dict[str, list[str]]:
        """Every registered group with the topics it has positions in."""

    async def claim(self, group: str, topic: str, owner: str, ttl: float) -> bool:
        """Try to become (or stay) the one consumer of ``group`` on ``topic``.

        Returns true when ``owner`` holds the claim for the next ``ttl`` seconds. A
        backend whose broker assigns partitions itself (Kafka) may always return true.
        """

    async def release(self, group: str, topic: str, owner: str) -> None:
        """Give the claim back if ``owner`` holds it."""

    async def commit(
        self, group: str, topic: str, positions: Mapping[int, int], done: Sequence[Done]
    ) -> None:
        """Atomically (where the store allows) set the group's positions in ``topic``,
        record ``done`` IDs as processed and raise the key versions they carry.

        Positions given replace the stored ones; partitions not given are unchanged.
        Key versions only ever go up.
        """

    async def processed(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """Return the subset of ``event_ids`` the group has recorded as processed."""

    async def key_versions(self, group: str, topic: str, keys: Sequence[str]) -> dict[str, int]:
        """Return the highest processed version per key (keys never seen are absent)."""

    async def rewind(
        self, group: str, topic: str, positions: Mapping[int, int], *, forget: bool
    ) -> None:
        """Set the group's positions in ``topic`` (a replay). With ``forget``, also drop
        the group's processed IDs and key versions for ``topic`` (``reprocess=True``)."""

    # -- dead letters ---------------------------------------------------------------

    async def add_dead_letter(self, letter: StoredDeadLetter) -> None:
        """Store ``letter`` (its ``id`` is new)."""

    async def dead_letters(self, group: str | None) -> list[StoredDeadLetter]:
        """Every dead letter (of ``group`` when given), oldest first."""

    async def dead_letter(self, letter_id: str) -> StoredDeadLetter | None:
        """The dead letter with that ID, or ``None``."""

    async def update_dead_letter(self, letter: StoredDeadLetter) -> None:
        """Replace the stored letter with the same ``id`` (a failed retry)."""

    async def delete_dead_letter(self, letter_id: str) -> bool:
        """Delete the letter; false when there was none."""


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


@runtime_checkable
class FlowLog(Protocol):
    """An optional capability: look events and attempts up by correlation ID.

    The bus checks for it (``isinstance(log, FlowLog)``): it then records every
    group's attempts as it consumes and answers ``events_for``/``history`` from it.
    ``memory://`` and ``sqlite://`` implement it; a backend without it still works,
    and those bus methods return empty lists there.
    """

    async def events_for(self, correlation_id: str, limit: int) -> Sequence[StoredEvent]:
        """Up to ``limit`` stored events with that correlation ID, oldest first."""

    async def add_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Record ``attempts`` (one write; a store may drop its oldest entries)."""

    async def attempts_for(self, correlation_id: str, limit: int) -> list[Attempt]:
        """Up to ``limit`` recorded attempts of that correlation ID, oldest first."""


class Member(Protocol):
    """One consumer's membership of a group on a topic (see :class:`GroupLog`).

    The bus uses one member per consuming task: ``fetch`` a batch, handle it, ``commit``
    it, repeat; ``close`` when done. Batches are strictly sequential: ``fetch`` is never
    called while a fetched batch is uncommitted.
    """

    async def fetch(self, limit: int, timeout: float) -> Sequence[StoredEvent]:
        """Return up to ``limit`` events that are this member's to handle now.

        Waits up to ``timeout`` seconds for some (the first call may also wait for the
        broker to assign work). Events of one partition come in offset order, starting
        at the group's committed position or after the last batch this member fetched.
        Empty when there is nothing (or nothing assigned to this member).
        """

    async def commit(self, positions: Mapping[int, int], done: Sequence[Done]) -> None:
        """Acknowledge the fetched batch: record ``done`` like :meth:`EventLog.commit`
        first, then move the group's positions (Kafka offsets, Redis ``XACK``).

        If the member lost the batch's partitions meanwhile (a rebalance after the
        session expired), the recorded IDs make the new owner skip what was handled.
        """

    async def close(self) -> None:
        """Leave the group so other members take over at once. Idempotent; an
        uncommitted batch is handed to whoever owns its partitions next."""


@runtime_checkable
class GroupLog(Protocol):
    """An optional capability: the broker hands a group's work out to its members.

    The bus checks for it (``isinstance(log, GroupLog)``): each consuming task then
    ``join``s and uses the :class:`Member` instead of :meth:`EventLog.claim` plus
    :meth:`EventLog.read`. ``kafka://`` (Kafka consumer groups: several processes share
    a topic's partitions, rebalanced as they come and go) and ``redis://`` (stream
    consumer groups: ``XREADGROUP``/``XACK``, pending entries of a dead consumer taken
    over with ``XAUTOCLAIM``) implement it. The group is registered (its starting
    positions set, see :meth:`EventLog.register`) before ``join`` is called.
    """

    async def join(self, group: str, topic: str, claim_ttl: float) -> Member:
        """Become a member of ``group`` consuming ``topic``.

        ``claim_ttl`` is the bus's: how long a member that stopped renewing (a dead
        process) keeps work from the others, for backends that use claims (Redis);
        Kafka's group protocol has its own session timeout and ignores it.
        """
