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
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from afterward._stats import incr
from afterward.events._backend import Backend
from afterward.events._envelope import Event
from afterward.events._handler import attempt_of, error_text, run_batch_handler, run_handler
from afterward.events._protocols import Member
from afterward.events._records import Attempt, Done, StoredDeadLetter, StoredEvent
from afterward.events._subscription import Subscription
from afterward.events._wire import UndecodableRecord, decode_stored, self_describing, stand_in

__all__ = ["add_dead_letter", "process_batch", "unwrap"]

logger = logging.getLogger("afterward.events")


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

    def admit(self, event: Event) -> bool:
        """Whether the handler should see ``event``: false (the skip recorded) for an ID
        the group processed (or met earlier in the batch) and for a stale version."""
        if event.id in self.seen:
            incr("events.duplicate", labels=(self.sub.group, self.sub.topic))
            if self.history is not None:
                self.history.append(attempt_of(self.sub, event, event.attempt, "duplicate"))
            return False
        self.seen.add(event.id)
        if event.key is not None and event.version is not None:
            known = self.versions.get(event.key)
            if known is not None and known >= event.version:
                incr("events.stale", labels=(self.sub.group, self.sub.topic))
                if self.history is not None:
                    self.history.append(attempt_of(self.sub, event, event.attempt, "stale"))
                self.done.append(Done(event.id))
                return False
        return True

    def succeeded(self, event: Event) -> Done:
        """Record ``event`` as handled (its version raised)."""
        incr("events.handled", labels=(self.sub.group, self.sub.topic))
        if event.key is not None and event.version is not None:
            self.versions[event.key] = event.version
        done = Done(event.id, event.key, event.version)
        self.done.append(done)
        return done

    async def run_as_batch(self, events: Sequence[tuple[StoredEvent, Event]]) -> None:
        """A batch handler's run: the admitted events in one call (retried as a whole);
        after its retries, one event at a time, so only the events that fail alone
        become dead letters. A batch being redelivered (a consumer died in it) runs
        one event at a time from the start, each delivery counted."""
        admitted = [(s, e) for s, e in events if self.admit(e)]
        if not admitted:
            return
        if not self.redelivered:
            batch = [e for _, e in admitted]
            _, error, _ = await run_batch_handler(self.sub, batch, system=self.backend.scheme)
            if error is None:
                for _, event in admitted:
                    self.succeeded(event)
                return
        for stored, event in admitted:
            await self.run_admitted(stored, event, single=[event])

    async def run_one(self, stored: StoredEvent, event: Event) -> None:
        if self.admit(event):
            await self.run_admitted(stored, event)

    async def run_admitted(
        self, stored: StoredEvent, event: Event, single: list[Event] | None = None
    ) -> None:
        """Run the handler for an admitted event (``single``: a batch handler, given a
        list of that one event)."""
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
        if single is not None:
            attempts, error, tb = await run_batch_handler(
                self.sub, single, system=self.backend.scheme
            )
        else:
            attempts, error, tb = await run_handler(
                self.sub, event, first, self.history, system=self.backend.scheme
            )
        if error is None:
            done = self.succeeded(event)
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
        await batch.dead_letter(record, stand_in(record), f"UndecodableRecord: {why}", "", 0)
    keys = list({e.key for _, e in events if e.key is not None and e.version is not None})
    if keys:
        batch.versions = await state.key_versions(sub.group, sub.topic, keys)

    if sub.batch:
        await batch.run_as_batch(events)
        return await _commit(backend, sub, stored, batch, member)
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
    return await _commit(backend, sub, stored, batch, member)


async def _commit(
    backend: Backend,
    sub: Subscription,
    stored: Sequence[StoredEvent],
    batch: _Batch,
    member: Member | None,
) -> dict[int, int]:
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
        await backend.state.commit(sub.group, sub.topic, positions, batch.done)
    return positions
