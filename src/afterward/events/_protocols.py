"""The seam between the bus and its backends: small capability protocols.

The bus (:mod:`afterward.events._bus`) does the shared work once: envelopes, validation,
schemas, idempotency, the version guard, retries, dead letters, lag and ``on_lag``.
A backend supplies primitives, grouped by capability:

- :class:`Log`: append and read events, end offsets, offsets by time.
- :class:`GroupState`: a group's positions, processed IDs and key versions, committed
  together; :class:`Claims`: one consumer per (group, topic);
  :class:`DeadLetterStore`: the dead letters. :class:`StateStore` is the three.
- :class:`EventLog` is a log that is also its own state store (memory, SQLite, Redis).
- :class:`SchemaStore`: the shared schema registry, in the state store.
- The work queue's (:mod:`._work_queue`): the durable ``queue`` job connection,
  with competing workers, per-job leases and due times.
- Optional: :class:`FlowLog` (events and attempts by correlation ID),
  :class:`GroupLog` (the broker hands a group's work out to :class:`Member` s),
  :class:`DeadLetterMirror` (a log that copies dead letters somewhere of its own).

:class:`~afterward.events._backend.Backend` is what a bus URL opens: a log and the
state store beside it (the same object except on Kafka, whose state lives in another
backend), with the optional capabilities looked up once. The in-memory backend
(:mod:`afterward.events.backends.memory`) is the reference implementation; the
conformance suite (``tests/events/test_conformance.py``) and the primitive tests
(``tests/events/test_primitives.py``) run against every backend.

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
errors (:mod:`afterward.events.backends._driver`). Coroutines may be awaited from any
event loop, including afterward's background loop (the sync twins run there), so a
backend must not bind itself to one loop at ``connect`` or must keep a client per loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from afterward.events._records import (
    AppendRecord,
    Attempt,
    Done,
    Pruned,
    StoredDeadLetter,
    StoredEvent,
    StoredSchema,
    TopicStorage,
)

__all__ = [
    "Claims",
    "ClusterLog",
    "ConnectContext",
    "Connectable",
    "DeadLetterMirror",
    "DeadLetterStore",
    "EventLog",
    "FlowLog",
    "GroupLog",
    "GroupState",
    "Log",
    "Member",
    "PrunableLog",
    "PrunableState",
    "RetainedLog",
    "SchemaStore",
    "StateStore",
]


class Connectable(Protocol):
    """Something with connections to open and close."""

    #: URL scheme of the backend (``"sqlite"``, ``"memory"``...), for error messages.
    scheme: str

    async def connect(self) -> None:
        """Open connections and create storage if missing. Idempotent."""

    async def aclose(self) -> None:
        """Release connections. Idempotent; it may be connected again."""


class ConnectContext:
    """``async with x:`` for a class with ``connect()``/``aclose()`` (backends, the bus):
    connect on entry, close on exit. A convenience mixin; the protocols do not need it."""

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
class Log(Connectable, Protocol):
    """The events themselves: append, read, and where partitions end."""

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


@runtime_checkable
class GroupState(Connectable, Protocol):
    """Where each group is, and what it has done: positions, processed IDs, versions."""

    async def positions(self, group: str, topic: str) -> dict[int, int] | None:
        """Return the group's committed positions in ``topic``, or ``None`` when the
        group has never been registered on that topic."""

    async def register(self, group: str, topic: str, positions: Mapping[int, int]) -> None:
        """Create the group's positions in ``topic`` if it has none (else do nothing)."""

    async def groups(self) -> dict[str, list[str]]:
        """Every registered group with the topics it has positions in."""

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

    async def begin_batch(
        self, group: str, topic: str, spans: Mapping[int, tuple[int, int]]
    ) -> dict[int, int]:
        """Record that the group starts handling offsets ``[start, end)`` of each
        partition in ``spans``; return, per partition, the end of an earlier batch that
        covered ``start`` and never committed (a consumer died in it: the events up to
        that end are being delivered again). A partition without one is left out, and
        its span becomes the one recorded; a redelivered partition keeps the old one.
        """

    async def count_attempt(self, group: str, topic: str, event_id: str) -> int:
        """Count one more delivery of ``event_id`` to the group (before its handler
        runs) and return how many were counted so far."""


@runtime_checkable
class Claims(Protocol):
    """One consumer per group and topic, held under a renewable lease."""

    async def claim(self, group: str, topic: str, owner: str, ttl: float) -> bool:
        """Try to become (or stay) the one consumer of ``group`` on ``topic``.

        Returns true when ``owner`` holds the claim for the next ``ttl`` seconds.
        ``owner`` is one consume loop (a ``drain()`` beside a ``run()`` in the same
        process is another owner).
        """

    async def release(self, group: str, topic: str, owner: str) -> None:
        """Give the claim back if ``owner`` holds it."""


@runtime_checkable
class DeadLetterStore(Protocol):
    """Events a group's handler failed on after all its retries."""

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


@runtime_checkable
class StateStore(GroupState, Claims, DeadLetterStore, Protocol):
    """Everything a bus keeps besides the events: what a Kafka bus's ``store=`` names."""

    async def bind_cluster(self, cluster_id: str) -> str:
        """Record that this store belongs to the log cluster ``cluster_id`` unless it
        belongs to one already; return the cluster it belongs to (so a store that outlived
        its cluster, or is pointed at another, is noticed instead of trusted)."""


@runtime_checkable
class EventLog(Log, StateStore, Protocol):
    """A log that is its own state store (``memory://``, ``sqlite://``, ``redis://``)."""


@runtime_checkable
class PrunableLog(Protocol):
    """A log that drops events past a retention itself, when asked (memory, SQLite,
    Redis, PostgreSQL; Kafka's broker does it from the topic's ``retention.ms``, set
    by :meth:`keep_for`)."""

    async def topics(self) -> list[str]:
        """Every topic that has events."""

    async def prune(self, topic: str, before: float, limit: int) -> int:
        """Delete up to ``limit`` of ``topic``'s oldest events with a time before
        ``before`` (POSIX seconds), with what indexes them (flows); return how many. The
        newest event of each partition is kept (the next offset follows it). One short
        write: a caller loops until it returns less than ``limit``."""

    async def first_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset of the oldest event still stored."""

    async def storage(self) -> dict[str, TopicStorage]:
        """Per topic: events stored, their size, the oldest one's time."""


@runtime_checkable
class RetainedLog(Protocol):
    """A log whose server keeps a retention of its own per topic (Kafka)."""

    def retain_by(self, retention_of: Callable[[str], float | None]) -> None:
        """Give the topics the log creates from now on the retention ``retention_of``
        says (seconds, ``None``: keep them all); the bus calls it once."""

    async def keep_for(self, topic: str, seconds: float | None) -> None:
        """Make the server drop ``topic``'s events older than ``seconds`` (``None``:
        keep them all)."""


@runtime_checkable
class PrunableState(Protocol):
    """A state store that drops what it recorded before a time: processed IDs, key
    versions, flow history (kept at least as long as the events they are about)."""

    async def prune_state(self, before: float, limit: int) -> Pruned:
        """Delete up to ``limit`` of each kind of record written before ``before``
        (POSIX seconds) in one short write; return how many of each."""


@runtime_checkable
class ClusterLog(Protocol):
    """An optional capability: a log that knows the identity of the cluster behind it
    (Kafka's cluster ID), checked against its separate state store at connect."""

    async def cluster_id(self) -> str:
        """The cluster's ID (stable while the cluster keeps its data)."""


@runtime_checkable
class FlowLog(Protocol):
    """An optional capability: look events and attempts up by correlation ID.

    When the log has it, the bus records every group's attempts as it consumes and
    answers ``events_for``/``history`` from it. ``memory://`` and ``sqlite://``
    implement it; a backend without it still works, and those bus methods return
    empty lists there.
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
        """Acknowledge the fetched batch: record ``done`` like :meth:`GroupState.commit`
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

    Each consuming task then ``join``s and uses the :class:`Member` instead of
    :meth:`Claims.claim` plus :meth:`Log.read`. ``kafka://`` (Kafka consumer groups:
    several processes share a topic's partitions, rebalanced as they come and go) and
    ``redis://`` (stream consumer groups: ``XREADGROUP``/``XACK``, pending entries of a
    dead consumer taken over with ``XAUTOCLAIM``) implement it. The group is registered
    (its starting positions set, see :meth:`GroupState.register`) before ``join``.
    """

    async def join(self, group: str, topic: str, claim_ttl: float) -> Member:
        """Become a member of ``group`` consuming ``topic``.

        ``claim_ttl`` is the bus's: how long a member that stopped renewing (a dead
        process) keeps work from the others, for backends that use claims (Redis);
        Kafka's group protocol has its own session timeout and ignores it.
        """


@runtime_checkable
class DeadLetterMirror(Protocol):
    """An optional capability: a log that keeps a copy of dead letters for its own
    tools (Kafka: the ``<topic>.dlq.<group>`` topic). The state store's copy is the one
    the bus lists, retries and discards."""

    async def mirror_dead_letter(self, letter: StoredDeadLetter, *, removed: bool) -> None:
        """Copy ``letter`` (or, with ``removed``, mark it retried or discarded)."""


@runtime_checkable
class SchemaStore(Protocol):
    """The schema registry: versions of each topic's schema, shared by every process."""

    async def schemas(self, topic: str | None) -> list[StoredSchema]:
        """Every version of ``topic``'s schema (of every topic when ``None``), by topic
        then version."""

    async def add_schema(self, schema: StoredSchema) -> bool:
        """Store ``schema`` if its version is the next one of its topic (the latest plus
        one, or 1): false, and nothing stored, when another process got there first."""
