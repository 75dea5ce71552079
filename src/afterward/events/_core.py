"""The state one :class:`~afterward.EventBus` shares between its parts.

:class:`BusCore` holds the backend, the settings, the subscriptions, the ``on_lag``
watches and the wake-ups of local consumers; publishing, consuming and operating
(:mod:`._publish`, :mod:`._consumers`, :mod:`._admin`, :mod:`._queue`) are functions of
it, and the bus's public methods are thin calls into them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from afterward._exceptions import ConfigError
from afterward._loop import run_sync
from afterward._stats import incr
from afterward.events._backend import Backend
from afterward.events._job_wire import is_job_record, queued_attempt, queued_job
from afterward.events._lag import LagWatch
from afterward.events._outbox import write_to_outbox_async
from afterward.events._outbox_store import OutboxStore
from afterward.events._records import AppendRecord, QueuedJob
from afterward.events._schema import SchemaRegistry
from afterward.events._subscription import Subscription

__all__ = ["BusCore", "BusSettings", "WorkerSpec"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BusSettings:
    """A bus's knobs, validated by :class:`~afterward.EventBus`."""

    max_event_bytes: int
    batch_size: int
    poll_interval: float
    claim_ttl: float
    outbox: bool
    keep_history: bool
    #: ``ce_source`` of the events this bus writes.
    source: str = "afterward"
    #: Seconds events are kept (``None``: forever), unless a topic has its own.
    retention: float | None = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """A queue ``run()``/``drain()`` works on (``subscribe_worker``)."""

    queue: str
    concurrency: int
    lease: float
    grace: float


class BusCore:
    """What every part of a bus reads and writes (see the module docstring).

    Attributes:
        url: the bus URL.
        backend: the log and state store behind it.
        settings: the bus's settings.
        schemas: the schemas checked at publish.
        owner: this bus's name among consumers (PID plus a random part).
        subs: the subscriptions, by (group, topic).
        watches: the ``on_lag`` registrations.
        outboxes: outbox stores this bus wrote to, by database identity.
        stopping: set by ``stop()``: consume loops return after their batch.
    """

    def __repr__(self) -> str:
        return f"<EventBus {self.url}>"

    def __init__(self, url: str, backend: Backend, settings: BusSettings) -> None:
        self.url = url
        self.backend = backend
        self.settings = settings
        self.schemas = SchemaRegistry(backend.schemas)
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.subs: dict[tuple[str, str], Subscription] = {}
        self.watches: list[LagWatch] = []
        self.outboxes: dict[object, OutboxStore] = {}
        #: Queues whose jobs ``run()``/``drain()`` also work on.
        self.workers: dict[str, WorkerSpec] = {}
        #: Per-topic retentions (``bus.retention(topic, ...)``), seconds or ``None``.
        self.retentions: dict[str, float | None] = {}
        self.stopping = False
        if backend.retained is not None:  # topics are created with their retention
            backend.retained.retain_by(self.retention_of)
        self._wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def outbox_address(self) -> str:
        """The bus an outbox row belongs to: its URL, except for a private ``memory://``
        store, which no other bus (nor a later process) may relay into."""
        if self.url.startswith("memory://") and not self.url[len("memory://") :].strip("/"):
            return f"memory://private-{self.owner}"
        return self.url

    def retention_of(self, topic: str) -> float | None:
        """Seconds ``topic``'s events are kept (``None``: forever)."""
        return self.retentions.get(topic, self.settings.retention)

    def sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on afterward's background loop and wait (the sync twins)."""
        return run_sync(coro)

    async def append(self, records: list[AppendRecord], *, outbox: bool = True) -> None:
        """Append ``records``: to the open transaction's outbox when there is one (and
        ``outbox``), else to the log; wake this process's consumers."""
        if outbox and self.settings.outbox and await write_to_outbox_async(self, records):
            return
        await self.append_now(records)

    async def append_now(self, records: list[AppendRecord]) -> None:
        """Append ``records`` to the log (no outbox) and wake local consumers; records
        that carry queue jobs go to the work queue instead."""
        jobs = [queued_job(r) for r in records if is_job_record(r)]
        if jobs:
            await self.enqueue(jobs)
            records = [r for r in records if not is_job_record(r)]
            if not records:
                return
        await self.backend.log.append(records)
        for record in records:
            incr("events.published", labels=(record.topic,))
        self._wake()

    async def enqueue(self, jobs: list[QueuedJob]) -> None:
        """Add ``jobs`` to the backend's work queue and wake local workers.

        Raises:
            ConfigError: the backend has no work queue.
        """
        queue = self.backend.queue
        if queue is None:
            raise ConfigError(f"the {self.backend.scheme}:// backend has no work queue")
        await queue.enqueue(jobs)
        incr("jobs.enqueued", len(jobs))
        self._wake()
        flow = self.backend.flow
        if flow is not None and self.settings.keep_history:
            now = datetime.now(UTC)
            await flow.add_attempts(
                [queued_attempt(j.queue, j.id, 1, j.correlation_id, now) for j in jobs]
            )

    def _wake(self) -> None:
        for loop, waker in list(self._wakers):
            if loop.is_closed():
                self._wakers.discard((loop, waker))
            else:
                loop.call_soon_threadsafe(waker.set)

    def waker(self) -> asyncio.Event:
        """An event set whenever this bus appends or enqueues (for an idle loop)."""
        waker = asyncio.Event()
        self._wakers.add((asyncio.get_running_loop(), waker))
        return waker

    def drop_waker(self, waker: asyncio.Event) -> None:
        """Stop setting ``waker``."""
        self._wakers.discard((asyncio.get_running_loop(), waker))

    def wake_all(self) -> None:
        """Set every waker (``stop()``: idle loops look at ``stopping`` at once)."""
        for loop, waker in list(self._wakers):
            if not loop.is_closed():
                loop.call_soon_threadsafe(waker.set)

    async def positions_of(self, sub: Subscription) -> dict[int, int]:
        """The group's positions in the topic, registering it at its start if new."""
        state = self.backend.state
        positions = await state.positions(sub.group, sub.topic)
        if positions is None:
            log = self.backend.log
            start = await log.end_offsets(sub.topic) if sub.start == "latest" else {}
            await state.register(sub.group, sub.topic, start)
            positions = await state.positions(sub.group, sub.topic) or {}
        return positions

    async def lag_of(
        self,
        group: str,
        topic: str,
        positions: dict[int, int],
        known_ends: dict[str, dict[int, int]] | None = None,
    ) -> int:
        """Events of ``topic`` past ``positions``; the ``on_lag`` watches see it.

        A position past its partition's end (the topic was recreated) counts that whole
        partition as lag: the consumer will reset to its start and read it all.
        ``known_ends`` caches the topics' end offsets across calls (one ``lag()``).
        """
        ends = None if known_ends is None else known_ends.get(topic)
        if ends is None:
            ends = await self.backend.log.end_offsets(topic)
            if known_ends is not None:
                known_ends[topic] = ends
        lag = 0
        for partition, end in ends.items():
            position = positions.get(partition, 0)
            lag += end - position if position <= end else end
        for watch in self.watches:
            await watch.check(group, topic, lag)
        return lag
