"""Consuming: ``subscribe``, ``run``, ``drain``, ``stop`` and ``tail``.

Each (group, topic) consumes in its own task. On a backend whose broker hands a group's
work out (:class:`~afterward.events._protocols.GroupLog`), the task joins the group and
fetches from its member. Elsewhere it holds the group's claim on the topic (a
:class:`~afterward.events._lease.Lease`: one consumer process at a time per group and
topic, renewed while a batch runs), reads a batch from its committed position and hands
it to :func:`~afterward.events._batch.process_batch`. Both check ``on_lag`` watches
after each batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal, TypeVar

from afterward._exceptions import ConfigError
from afterward._stats import incr
from afterward.events._batch import process_batch, unwrap
from afterward.events._core import BusCore, WorkerSpec
from afterward.events._envelope import Event, validate_topic
from afterward.events._job_wire import worker_group
from afterward.events._lease import Lease
from afterward.events._protocols import GroupLog
from afterward.events._prune import pruner
from afterward.events._publish import relay_outboxes
from afterward.events._queue import queue_of
from afterward.events._subscription import BatchHandler, Handler, Subscription
from afterward.events._wire import UndecodableRecord, decode_stored
from afterward.events._worker import Worker

__all__ = ["Consuming", "run"]

F = TypeVar("F", bound=Handler | BatchHandler)

logger = logging.getLogger("afterward.events")

#: How often an idle member checks that the group's positions are not past the end
#: (an idle claim loop checks on every empty read: its reads are local).
_AHEAD_CHECK_SECONDS = 5.0


def _standby_wait(core: BusCore) -> float:
    """Seconds a consumer whose claim is held elsewhere waits before trying again."""
    settings = core.settings
    return max(settings.poll_interval, min(settings.claim_ttl / 3, 1.0))


async def _consume_once(core: BusCore, sub: Subscription, lease: Lease) -> int:
    """Handle one batch for ``sub`` under ``lease``; return how many events were read,
    or -1 when another consumer holds the group's claim on the topic."""
    if not await lease.hold():
        return -1
    positions = await core.positions_of(sub)
    stored = await core.backend.log.read(sub.topic, positions, core.settings.batch_size)
    if not stored:
        await reset_if_ahead(core, sub, positions)
        return 0
    # A batch may outlast the claim (slow handlers, retries): renew it meanwhile.
    renewal = asyncio.create_task(lease.keep())
    try:
        moved = await process_batch(
            core.backend,
            sub,
            stored,
            history=core.settings.keep_history,
            source=core.settings.source,
        )
    finally:
        renewal.cancel()
    if core.watches:
        await core.lag_of(sub.group, sub.topic, {**positions, **moved})
    return len(stored)


async def _member_loop(
    core: BusCore, log: GroupLog, sub: Subscription, stop_when_idle: bool
) -> bool:
    """Consume ``sub`` as a member of its group on a backend that hands work out;
    like :func:`_claim_loop`, true when it stopped idle without having had any work
    (the group gave it to other members: ``run`` then waits at standby pace)."""
    settings = core.settings
    await core.positions_of(sub)
    member = await log.join(sub.group, sub.topic, settings.claim_ttl)
    worked = False
    check_at = 0.0  # when an idle member next looks for positions past the end
    try:
        while not core.stopping:
            stored = await member.fetch(settings.batch_size, settings.poll_interval)
            if not stored:
                if time.monotonic() >= check_at:
                    check_at = time.monotonic() + _AHEAD_CHECK_SECONDS
                    positions = await core.backend.state.positions(sub.group, sub.topic)
                    if await reset_if_ahead(core, sub, positions or {}):
                        continue
                if stop_when_idle:
                    return not worked
                continue
            worked = True
            await process_batch(
                core.backend,
                sub,
                stored,
                history=settings.keep_history,
                member=member,
                source=settings.source,
            )
            if core.watches:
                # Other members move other partitions: read the group's positions.
                positions = await core.backend.state.positions(sub.group, sub.topic)
                await core.lag_of(sub.group, sub.topic, positions or {})
        return False
    finally:
        await member.close()


async def _claim_loop(core: BusCore, sub: Subscription, stop_when_idle: bool) -> bool:
    """Consume ``sub`` under the group's claim until stopped (or idle, with
    ``stop_when_idle``); return true when it stopped idle because another consumer
    holds the claim."""
    state = core.backend.state
    # A claim per loop, not per bus: a drain() while run() consumes in this process
    # must wait for it like any other consumer, not handle the same batch again.
    owner = f"{core.owner}.{uuid.uuid4().hex[:8]}"

    async def claim(ttl: float) -> int:
        return int(await state.claim(sub.group, sub.topic, owner, ttl))

    lease = Lease(claim, core.settings.claim_ttl)
    waker = core.waker()
    try:
        while not core.stopping:
            waker.clear()
            read = await _consume_once(core, sub, lease)
            if read > 0:
                continue
            if stop_when_idle:
                return read < 0
            # Idle: wake on a local publish, else look again after poll_interval; a
            # standby consumer (claim held elsewhere) looks less often.
            wait = core.settings.poll_interval if read == 0 else _standby_wait(core)
            # asyncio.timeout, not wait_for: wait_for can lose a cancellation that
            # arrives as it times out on Python 3.11 (CPython gh-86296).
            try:
                async with asyncio.timeout(wait):
                    await waker.wait()
            except TimeoutError:
                pass
        return False
    finally:
        core.drop_waker(waker)
        lease.forget()
        await state.release(sub.group, sub.topic, owner)


async def _consume_loop(core: BusCore, sub: Subscription, stop_when_idle: bool) -> bool:
    groups = core.backend.groups
    if groups is not None:
        return await _member_loop(core, groups, sub, stop_when_idle)
    return await _claim_loop(core, sub, stop_when_idle)


async def reset_if_ahead(core: BusCore, sub: Subscription, positions: dict[int, int]) -> bool:
    """Positions never skip silently: a position past its partition's end (the topic was
    recreated, the broker lost its data) is reset to the group's start policy, with an
    error logged; true when one was."""
    ends = await core.backend.log.end_offsets(sub.topic)
    ahead = {p: o for p, o in positions.items() if o > ends.get(p, 0)}
    if not ahead:
        return False
    reset = {p: (ends.get(p, 0) if sub.start == "latest" else 0) for p in ahead}
    for partition, position in sorted(ahead.items()):
        logger.error(
            "group %r on topic %r, partition %d: the stored position %d is past the "
            "partition's end %d (the topic was recreated or the broker lost its data); "
            "reset to %d (start=%r)",
            sub.group,
            sub.topic,
            partition,
            position,
            ends.get(partition, 0),
            reset[partition],
            sub.start,
        )
    incr("events.positions_reset", len(reset))
    await core.backend.state.rewind(sub.group, sub.topic, reset, forget=False)
    return True


async def _consume_forever(core: BusCore, sub: Subscription) -> bool:
    """:func:`_consume_loop` for ``run()``: nothing but cancellation (or ``stop()``) ends
    it. A failure (the backend away, anything unexpected) is logged with its traceback,
    counted, and consuming starts again after a backoff (0.5 s doubling up to 30 s)."""
    pause = 0.0
    while not core.stopping:
        try:
            return await _consume_loop(core, sub, False)
        except Exception:
            pause = min(30.0, max(0.5, pause * 2))
            incr("events.consumer_errors")
            logger.exception(
                "consuming %r for group %r failed; starting again in %.1f s",
                sub.topic,
                sub.group,
                pause,
            )
            await asyncio.sleep(pause)
    return False


def _select(
    core: BusCore, groups: Iterable[str] | None
) -> tuple[list[Subscription], list[WorkerSpec]]:
    if isinstance(groups, str):
        groups = [groups]
    wanted = None if groups is None else set(groups)
    subs = [s for s in core.subs.values() if wanted is None or s.group in wanted]
    specs = [w for w in core.workers.values() if wanted is None or worker_group(w.queue) in wanted]
    known = {s.group for s in subs} | {worker_group(w.queue) for w in specs}
    if wanted is not None and not wanted <= known:
        raise ConfigError(f"no handlers subscribed for groups {sorted(wanted - known)}")
    return subs, specs


async def _pending(core: BusCore, subs: list[Subscription], specs: list[WorkerSpec]) -> bool:
    # A handler of one group may have published to another's topic (or queue) meanwhile.
    for sub in subs:
        positions = await core.positions_of(sub)
        ends = await core.backend.log.end_offsets(sub.topic)
        if any(end > positions.get(p, 0) for p, end in ends.items()):
            return True
    if specs:
        jobs, _ = queue_of(core)
        for spec in specs:
            depth = (await jobs.depth(spec.queue)).get(spec.queue)
            if depth is not None and depth.ready + depth.delayed + depth.running:
                return True
    return False


async def _work(core: BusCore, spec: WorkerSpec, stop_when_idle: bool) -> bool:
    worker = Worker(
        core, spec.queue, concurrency=spec.concurrency, lease=spec.lease, grace=spec.grace
    )
    await worker.run(stop_when_idle=stop_when_idle)
    return False


async def run(
    core: BusCore, groups: Iterable[str] | None = None, stop_when_idle: bool = False
) -> None:
    """Consume for ``groups`` (every subscribed group by default); see
    :meth:`Consuming.run`."""
    subs, specs = _select(core, groups)
    # Reset before the first await: a stop() (SIGTERM) arriving while connecting or
    # relaying the outbox must still stop this run.
    core.stopping = False
    await core.backend.connect()
    await relay_outboxes(core)
    background = None if stop_when_idle else asyncio.create_task(pruner(core))
    try:
        await _run_loops(core, subs, specs, stop_when_idle)
    finally:
        if background is not None:
            background.cancel()
            await asyncio.gather(background, return_exceptions=True)


async def _run_loops(
    core: BusCore, subs: list[Subscription], specs: list[WorkerSpec], stop_when_idle: bool
) -> None:
    while not core.stopping:
        try:
            async with asyncio.TaskGroup() as tasks:
                loops = [
                    tasks.create_task(
                        _consume_loop(core, sub, True)
                        if stop_when_idle
                        else _consume_forever(core, sub)
                    )
                    for sub in subs
                ]
                for spec in specs:
                    tasks.create_task(_work(core, spec, stop_when_idle))
        except BaseExceptionGroup as failed:
            raise unwrap(failed) from None
        if not stop_when_idle or not await _pending(core, subs, specs):
            return
        if any(done.result() for done in loops):
            # Another consumer holds a claim and work is pending: wait for it at the
            # standby pace instead of retrying the claim (a write) in a hot loop.
            await asyncio.sleep(_standby_wait(core))


class Consuming:
    """The consuming methods of :class:`~afterward.EventBus`."""

    _core: BusCore

    def subscribe(
        self,
        topic: str,
        *,
        group: str,
        retries: int = 3,
        backoff: float | Iterable[float] = (0.1, 1, 5),
        concurrency: int = 1,
        start: Literal["earliest", "latest"] = "earliest",
        inbox: Any = None,
        raw: bool = False,
        batch: bool = False,
    ) -> Callable[[F], F]:
        """Register the decorated function as ``group``'s handler for ``topic``.

        Args:
            topic: the topic to consume.
            group: the consumer group; each group gets every event.
            retries: extra attempts after a failure (``3`` means up to 4 runs).
            backoff: seconds before each retry; the last value repeats.
            concurrency: events of different keys run at most this many at once (same
                key: always in order). Keyless events then run in any order.
            start: where a group new to the topic starts: ``"earliest"`` or ``"latest"``.
            inbox: a SQLAlchemy engine or sessionmaker: run the handler in a transaction
                there (``event.session``), recording the event ID in it.
            raw: hand the handler ``event.data`` as the record's bytes, undecoded (for
                records that are not JSON: protobuf, Avro, text).
            batch: the handler takes a ``list[Event]``: the events of a fetched batch
                the group has not handled (duplicates and stale versions left out), in
                order per key. Exactly-once effect and dead letters stay per event: a
                batch that fails after its retries is handed over again one event at a
                time, and only the events that fail alone become dead letters.

        Raises:
            ConfigError: a bad option, or ``group`` already has a handler for ``topic``.
        """
        template = Subscription.checked(
            topic,
            group,
            retries=retries,
            backoff=backoff,
            concurrency=concurrency,
            start=start,
            inbox=inbox,
            raw=raw,
            batch=batch,
        )
        subs = self._core.subs
        if (group, topic) in subs:
            raise ConfigError(f"group {group!r} already has a handler for {topic!r}")

        def register(handler: F) -> F:
            subs[(group, topic)] = template.with_handler(handler)
            return handler

        return register

    async def run(self, groups: Iterable[str] | None = None, stop_when_idle: bool = False) -> None:
        """Consume for ``groups`` (every subscribed group by default) until cancelled.

        Each (group, topic) consumes in its own task. With ``stop_when_idle``, return
        once nothing is pending for any of them.
        """
        await run(self._core, groups, stop_when_idle)

    def stop(self) -> None:
        """Ask :meth:`run` to return once the batches in flight are handled and committed
        (safe from signal handlers and other threads)."""
        self._core.stopping = True
        self._core.wake_all()

    async def drain(self, groups: Iterable[str] | None = None) -> None:
        """Process everything pending for ``groups`` (default: all), then return."""
        await run(self._core, groups, stop_when_idle=True)

    def drain_sync(self, groups: Iterable[str] | None = None) -> None:
        """Sync twin of :meth:`drain`."""
        self._core.sync(run(self._core, groups, stop_when_idle=True))

    async def tail(self, *topics: str, from_beginning: bool = False) -> AsyncIterator[Event]:
        """Yield events of ``topics`` as they arrive, without any consumer group.

        Raises:
            ConfigError: no topic given.
            PublishError: an invalid topic name.
        """
        if not topics:
            raise ConfigError("tail needs at least one topic")
        for topic in topics:
            validate_topic(topic)
        core = self._core
        log = core.backend.log
        positions = {t: ({} if from_beginning else await log.end_offsets(t)) for t in topics}
        while True:
            found = False
            for topic in topics:
                for stored in await log.read(topic, positions[topic], core.settings.batch_size):
                    found = True
                    positions[topic][stored.partition] = stored.offset + 1
                    try:
                        yield decode_stored(stored)
                    except UndecodableRecord as exc:
                        logger.warning("tail: skipped an undecodable record of %r: %s", topic, exc)
            if not found:
                await asyncio.sleep(core.settings.poll_interval)
