"""One consumer group on one topic: read a batch, run the handler, commit.

The guarantees that are the same on every backend live here, once: duplicates (a
producer's retried ``id=``, a replay, a redelivery) are skipped against the processed-ID
store and within the batch; events of one key run in order while different keys may run
concurrently (``concurrency``); stale versions are skipped and counted; a failing handler
is retried with backoff and then dead-lettered; the batch's positions, processed IDs
and key versions are committed together.

Without ``inbox=``, a crash after a handler returned and before the batch commit runs
that handler again for the same event on redelivery (at-least-once); with ``inbox=``
the processed ID is written in the handler's own database transaction.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

from afterward import _telemetry
from afterward._stats import incr, observe
from afterward.defer import DeferScope
from afterward.events._backend import Backend
from afterward.events._envelope import Event
from afterward.events._protocols import Member
from afterward.events._records import Attempt, Done, StoredDeadLetter, StoredEvent
from afterward.events._subscription import Subscription
from afterward.events._wire import UndecodableRecord, decode_stored, self_describing

__all__ = [
    "add_dead_letter",
    "attempt_of",
    "error_text",
    "process_batch",
    "run_handler",
    "unwrap",
]

logger = logging.getLogger("afterward.events")


async def _call(sub: Subscription, event: Event, system: str) -> None:
    tracing = _telemetry.tracing
    started = time.perf_counter()
    try:
        if tracing is None:
            await _handle(sub, event)
            return
        with tracing.consume(system, sub.group, event):
            await _handle(sub, event)
    finally:
        observe("events.handler_seconds", (sub.group, sub.topic), time.perf_counter() - started)


async def _handle(sub: Subscription, event: Event) -> None:
    async with DeferScope(event.correlation_id):
        if sub.inbox is not None:
            from afterward.events._inbox import run_in_inbox

            await run_in_inbox(sub, event)
        elif sub.is_async:
            await cast("Awaitable[None]", sub.handler(event))
        else:
            result = await asyncio.to_thread(sub.handler, event)
            if inspect.isawaitable(result):
                await result


def error_text(error: BaseException) -> str:
    """``"ExceptionType: message"``, as dead letters and attempts store it."""
    return f"{type(error).__name__}: {error}"


def attempt_of(
    sub: Subscription, event: Event, attempt: int, outcome: str, error: str | None = None
) -> Attempt:
    """An :class:`Attempt` of ``sub``'s group with ``event``, happening now."""
    return Attempt(
        event.correlation_id or "",
        sub.group,
        sub.topic,
        event.id,
        attempt,
        outcome,
        datetime.now(UTC),
        error,
    )


async def run_handler(
    sub: Subscription,
    event: Event,
    first_attempt: int = 1,
    history: list[Attempt] | None = None,
    *,
    system: str = "afterward",
) -> tuple[int, BaseException | None, str]:
    """Run the handler with retries; return (attempts made, last error, its traceback).

    With ``history``, append a ``handled`` or ``failed`` :class:`Attempt` per run.
    ``system`` (the backend's URL scheme) names the messaging system in traces.
    """
    attempt = first_attempt
    last_attempt = first_attempt + sub.retries
    while True:
        try:
            await _call(
                sub, event if event.attempt == attempt else replace(event, attempt=attempt), system
            )
            if history is not None:
                history.append(attempt_of(sub, event, attempt, "handled"))
            return attempt, None, ""
        except Exception as exc:
            tb = traceback.format_exc()
            if history is not None:
                history.append(attempt_of(sub, event, attempt, "failed", error_text(exc)))
            logger.warning(
                "handler %s of group %r failed on event %s (attempt %d): %r",
                getattr(sub.handler, "__qualname__", sub.handler),
                sub.group,
                event.id,
                attempt,
                exc,
                extra={"correlation_id": event.correlation_id},
            )
            if attempt >= last_attempt:
                return attempt, exc, tb
            incr("events.retried", labels=(sub.group, sub.topic))
            await asyncio.sleep(sub.delay_before(attempt - first_attempt + 1))
            attempt += 1


def unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (a backend error, not a cancellation)."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return unwrap(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


def _died_during(count: int) -> str:
    return (
        f"ConsumerDied: the consumer handling this event died (killed, crashed or out of "
        f"memory) during {count} deliveries in a row; dead-lettered after the group's retries"
    )


class _Batch:
    def __init__(
        self,
        backend: Backend,
        sub: Subscription,
        processed: set[str],
        history: bool,
        redelivered: dict[int, int],
        source: str,
    ) -> None:
        self.backend = backend
        self.source = source
        self.sub = sub
        self.seen = processed
        #: Per partition, the end of a batch being delivered again (a consumer died in
        #: it): its events run one by one, each delivery counted first, each success
        #: recorded at once, so a poison event cannot stop the group.
        self.redelivered = redelivered
        self.versions: dict[str, int] = {}
        self.done: list[Done] = []
        # Only backends with the flow capability keep attempts: others pay nothing.
        keep = history and backend.flow is not None
        self.history: list[Attempt] | None = [] if keep else None

    async def run_chain(self, chain: Sequence[tuple[StoredEvent, Event]]) -> None:
        for stored, event in chain:
            await self.run_one(stored, event)

    async def run_one(self, stored: StoredEvent, event: Event) -> None:
        if event.id in self.seen:
            incr("events.duplicate", labels=(self.sub.group, self.sub.topic))
            if self.history is not None:
                self.history.append(attempt_of(self.sub, event, event.attempt, "duplicate"))
            return
        self.seen.add(event.id)
        if event.key is not None and event.version is not None:
            known = self.versions.get(event.key)
            if known is not None and known >= event.version:
                incr("events.stale", labels=(self.sub.group, self.sub.topic))
                if self.history is not None:
                    self.history.append(attempt_of(self.sub, event, event.attempt, "stale"))
                self.done.append(Done(event.id))
                return
        suspect = self.redelivered.get(stored.partition, -1) > stored.offset
        first = 1
        if suspect:
            # Counted before the handler runs. The delivery that died first was not
            # counted, so this count is also how many deliveries died: past
            # ``retries``, the handler has had its retries + 1 runs.
            state = self.backend.state
            count = await state.count_attempt(self.sub.group, self.sub.topic, event.id)
            if count > self.sub.retries:
                await self.dead_letter(stored, event, _died_during(count), "", count)
                return
            first = count + 1
        attempts, error, tb = await run_handler(
            self.sub, event, first, self.history, system=self.backend.scheme
        )
        if error is None:
            incr("events.handled", labels=(self.sub.group, self.sub.topic))
            if event.key is not None and event.version is not None:
                self.versions[event.key] = event.version
            done = Done(event.id, event.key, event.version)
            self.done.append(done)
            if suspect:  # recorded at once: a later crash in this batch cannot repeat it
                await self.backend.state.commit(self.sub.group, self.sub.topic, {}, [done])
            return
        await self.dead_letter(stored, event, error_text(error), tb, attempts)

    async def dead_letter(
        self, stored: StoredEvent, event: Event, error: str, tb: str, attempts: int
    ) -> None:
        """Store the event as a dead letter; the group moves on past it."""
        incr("events.dead_lettered", labels=(self.sub.group, self.sub.topic))
        await add_dead_letter(
            self.backend,
            StoredDeadLetter(
                id=str(uuid.uuid4()),
                group=self.sub.group,
                record=self_describing(stored, self.source),
                error=error,
                traceback=tb,
                attempts=attempts,
                failed_at=datetime.now(UTC),
            ),
        )
        if self.history is not None:
            self.history.append(attempt_of(self.sub, event, attempts, "dead_lettered", error))
        self.done.append(Done(event.id, processed=False))


async def add_dead_letter(backend: Backend, letter: StoredDeadLetter) -> None:
    """Store ``letter`` (and copy it where the log mirrors dead letters)."""
    await backend.state.add_dead_letter(letter)
    if backend.mirror is not None:
        await backend.mirror.mirror_dead_letter(letter, removed=False)


def _spans(stored: Sequence[StoredEvent]) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets ``[start, end)`` the batch covers."""
    spans: dict[int, tuple[int, int]] = {}
    for s in stored:
        start, end = spans.get(s.partition, (s.offset, s.offset + 1))
        spans[s.partition] = (min(start, s.offset), max(end, s.offset + 1))
    return spans


def _decode(
    stored: Sequence[StoredEvent], raw: bool
) -> tuple[list[tuple[StoredEvent, Event]], list[tuple[StoredEvent, UndecodableRecord]]]:
    """The batch's events, and the records that cannot be read (poison)."""
    events: list[tuple[StoredEvent, Event]] = []
    poison: list[tuple[StoredEvent, UndecodableRecord]] = []
    for record in stored:
        try:
            events.append((record, decode_stored(record, raw=raw)))
        except UndecodableRecord as exc:
            poison.append((record, exc))
    return events, poison


async def process_batch(
    backend: Backend,
    sub: Subscription,
    stored: Sequence[StoredEvent],
    *,
    history: bool = True,
    member: Member | None = None,
    source: str = "afterward",
) -> dict[int, int]:
    """Handle ``stored`` for ``sub`` and commit; return the new positions.

    With ``history`` and a backend that keeps flows, also record the batch's attempts.
    With ``member`` (a backend with consumer groups), commit through it. ``source`` is
    the bus's ``ce_source``, for dead letters of records a backend decoded itself.
    """
    state = backend.state
    redelivered = await state.begin_batch(sub.group, sub.topic, _spans(stored))
    events, poison = _decode(stored, sub.raw)
    processed = await state.processed(sub.group, list({e.id for _, e in events}))
    batch = _Batch(backend, sub, processed, history, redelivered, source)
    for record, why in poison:
        # Retrying cannot change the bytes: a record that cannot be read is a dead letter
        # at once, and the group moves on past it.
        stand_in = Event(f"{record.topic}:{record.partition}:{record.offset}", record.topic, None)
        await batch.dead_letter(record, stand_in, f"UndecodableRecord: {why}", "", 0)
    keys = list({e.key for _, e in events if e.key is not None and e.version is not None})
    if keys:
        batch.versions = await state.key_versions(sub.group, sub.topic, keys)

    chains: dict[object, list[tuple[StoredEvent, Event]]] = {}
    for index, item in enumerate(events):
        # Keyless events promise no order: each is its own chain.
        chains.setdefault(item[1].key if item[1].key is not None else index, []).append(item)
    if sub.concurrency <= 1 or len(chains) == 1:
        for chain in chains.values():
            await batch.run_chain(chain)
    else:
        limit = asyncio.Semaphore(sub.concurrency)

        async def bounded(chain: list[tuple[StoredEvent, Event]]) -> None:
            async with limit:
                await batch.run_chain(chain)

        try:
            async with asyncio.TaskGroup() as tasks:
                for chain in chains.values():
                    tasks.create_task(bounded(chain))
        except BaseExceptionGroup as failed:
            raise unwrap(failed) from None

    positions: dict[int, int] = {}
    for s in stored:
        positions[s.partition] = max(positions.get(s.partition, 0), s.offset + 1)
    if batch.history and backend.flow is not None:
        # Before the commit: a crash in between repeats the batch, and its history
        # then shows the runs twice, as they happened.
        await backend.flow.add_attempts(batch.history)
    if member is not None:
        await member.commit(positions, batch.done)
    else:
        await state.commit(sub.group, sub.topic, positions, batch.done)
    return positions
