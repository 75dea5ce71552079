"""Consuming: ``subscribe``, ``run``, ``drain``, ``stop`` and ``tail``.

A base class of :class:`~afterward.events.EventBus`. Each (group, topic) consumes in its
own task: it claims the pair (one consumer process at a time per group and topic,
renewed while a batch runs), reads a batch from its committed position, hands it to
:func:`~afterward.events._consume.process_batch`, and checks ``on_lag`` watches.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal, TypeVar

from afterward._exceptions import ConfigError
from afterward.events._admin import BusAdmin
from afterward.events._backend import GroupLog
from afterward.events._consume import Handler, Subscription, process_batch, unwrap
from afterward.events._envelope import Event, decode_event, validate_topic

__all__ = ["Consumers"]

F = TypeVar("F", bound=Handler)


class Consumers(BusAdmin):
    """Subscribing and consuming, for :class:`~afterward.EventBus`."""

    batch_size: int
    poll_interval: float
    claim_ttl: float
    _owner: str
    _stopping: bool
    _wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]
    _claimed_until: dict[tuple[str, str, str], float]

    async def connect(self) -> None:
        raise NotImplementedError  # provided by EventBus

    async def relay_outbox(self, database: Any = None) -> int:
        raise NotImplementedError  # provided by EventBus

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
        """
        validate_topic(topic)
        if not isinstance(group, str) or not group or len(group) > 249:
            raise ConfigError(f"group must be a non-empty str, got {group!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
        delays = (backoff,) if isinstance(backoff, int | float) else tuple(backoff)
        if any(isinstance(d, bool) or not isinstance(d, int | float) or d < 0 for d in delays):
            raise ConfigError(f"backoff must be seconds >= 0, got {backoff!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if start not in ("earliest", "latest"):
            raise ConfigError(f"start must be 'earliest' or 'latest', got {start!r}")
        if (group, topic) in self._subs:
            raise ConfigError(f"group {group!r} already has a handler for {topic!r}")

        def register(handler: F) -> F:
            if not callable(handler):
                raise ConfigError(f"a handler must be callable, got {handler!r}")
            self._subs[(group, topic)] = Subscription(
                topic,
                group,
                handler,
                retries,
                tuple(map(float, delays)),
                concurrency,
                start,
                inbox,
            )
            return handler

        return register

    async def _register(self, sub: Subscription) -> dict[int, int]:
        positions = await self._log.positions(sub.group, sub.topic)
        if positions is None:
            start = await self._log.end_offsets(sub.topic) if sub.start == "latest" else {}
            await self._log.register(sub.group, sub.topic, start)
            positions = await self._log.positions(sub.group, sub.topic) or {}
        return positions

    async def _claim(self, sub: Subscription, owner: str) -> bool:
        # Renew only when a third of the claim has passed: an idle poll stays a read.
        key = (sub.group, sub.topic, owner)
        now = time.monotonic()
        if self._claimed_until.get(key, 0.0) - now > self.claim_ttl * 2 / 3:
            return True
        if await self._log.claim(sub.group, sub.topic, owner, self.claim_ttl):
            self._claimed_until[key] = now + self.claim_ttl
            return True
        self._claimed_until.pop(key, None)
        return False

    async def _consume_once(self, sub: Subscription, owner: str) -> int:
        """Handle one batch for ``sub`` as ``owner``; return how many events were read,
        or -1 when another consumer holds the group's claim on the topic."""
        if not await self._claim(sub, owner):
            return -1
        positions = await self._register(sub)
        stored = await self._log.read(sub.topic, positions, self.batch_size)
        if not stored:
            return 0
        heartbeat = asyncio.create_task(self._keep_claim(sub, owner))
        try:
            moved = await process_batch(self._log, sub, stored, history=self.keep_history)
        finally:
            heartbeat.cancel()
        await self._check_watches(sub, {**positions, **moved})
        return len(stored)

    async def _check_watches(self, sub: Subscription, positions: dict[int, int] | None) -> None:
        """Run the ``on_lag`` watches for ``sub`` at ``positions`` (read them if unknown)."""
        if not self._watches:
            return
        if positions is None:
            positions = await self._log.positions(sub.group, sub.topic) or {}
        ends = await self._log.end_offsets(sub.topic)
        lag = sum(max(0, end - positions.get(p, 0)) for p, end in ends.items())
        for watch in self._watches:
            await watch.check(sub.group, sub.topic, lag)

    async def _member_loop(self, log: GroupLog, sub: Subscription, stop_when_idle: bool) -> bool:
        """Consume ``sub`` as a member of its group on a backend that hands work out;
        like :meth:`_consume_loop`, true when it stopped idle without having had any
        work (the group gave it to other members: ``run`` then waits at standby pace)."""
        await self._register(sub)
        member = await log.join(sub.group, sub.topic, self.claim_ttl)
        worked = False
        try:
            while not self._stopping:
                stored = await member.fetch(self.batch_size, self.poll_interval)
                if not stored:
                    if stop_when_idle:
                        return not worked
                    continue
                worked = True
                await process_batch(
                    self._log, sub, stored, history=self.keep_history, member=member
                )
                # Other members move other partitions: read the group's positions.
                await self._check_watches(sub, None)
            return False
        finally:
            await member.close()

    async def _keep_claim(self, sub: Subscription, owner: str) -> None:
        # A batch may outlast the claim (slow handlers, retries): renew it meanwhile.
        while True:
            await asyncio.sleep(self.claim_ttl / 3)
            if await self._log.claim(sub.group, sub.topic, owner, self.claim_ttl):
                self._claimed_until[(sub.group, sub.topic, owner)] = (
                    time.monotonic() + self.claim_ttl
                )

    def _select(self, groups: Iterable[str] | None) -> list[Subscription]:
        if isinstance(groups, str):
            groups = [groups]
        wanted = None if groups is None else set(groups)
        subs = [s for s in self._subs.values() if wanted is None or s.group in wanted]
        if wanted is not None and not wanted <= {s.group for s in subs}:
            missing = sorted(wanted - {s.group for s in subs})
            raise ConfigError(f"no handlers subscribed for groups {missing}")
        return subs

    def _standby_wait(self) -> float:
        """Seconds a consumer whose claim is held elsewhere waits before trying again."""
        return max(self.poll_interval, min(self.claim_ttl / 3, 1.0))

    async def _consume_loop(self, sub: Subscription, stop_when_idle: bool) -> bool:
        """Consume ``sub`` until stopped (or idle, with ``stop_when_idle``); return true
        when it stopped idle because another consumer holds the claim."""
        if isinstance(self._log, GroupLog):
            return await self._member_loop(self._log, sub, stop_when_idle)
        loop = asyncio.get_running_loop()
        waker = asyncio.Event()
        self._wakers.add((loop, waker))
        # A claim per loop, not per bus: a drain() while run() consumes in this process
        # must wait for it like any other consumer, not handle the same batch again.
        owner = f"{self._owner}.{uuid.uuid4().hex[:8]}"
        try:
            while not self._stopping:
                waker.clear()
                read = await self._consume_once(sub, owner)
                if read > 0:
                    continue
                if stop_when_idle:
                    return read < 0
                # Idle: wake on a local publish, else look again after poll_interval; a
                # standby consumer (claim held elsewhere) looks less often.
                wait = self.poll_interval if read == 0 else self._standby_wait()
                try:
                    await asyncio.wait_for(waker.wait(), wait)
                except TimeoutError:
                    pass
            return False
        finally:
            self._wakers.discard((loop, waker))
            self._claimed_until.pop((sub.group, sub.topic, owner), None)
            await self._log.release(sub.group, sub.topic, owner)

    async def run(self, groups: Iterable[str] | None = None, stop_when_idle: bool = False) -> None:
        """Consume for ``groups`` (every subscribed group by default) until cancelled.

        Each (group, topic) consumes in its own task. With ``stop_when_idle``, return
        once nothing is pending for any of them.
        """
        subs = self._select(groups)
        # Reset before the first await: a stop() (SIGTERM) arriving while connecting or
        # relaying the outbox must still stop this run.
        self._stopping = False
        await self.connect()
        await self.relay_outbox()
        while not self._stopping:
            try:
                async with asyncio.TaskGroup() as tasks:
                    loops = [
                        tasks.create_task(self._consume_loop(sub, stop_when_idle)) for sub in subs
                    ]
            except BaseExceptionGroup as failed:
                raise unwrap(failed) from None
            if not stop_when_idle or not await self._pending(subs):
                return
            if any(done.result() for done in loops):
                # Another consumer holds a claim and work is pending: wait for it at the
                # standby pace instead of retrying the claim (a write) in a hot loop.
                await asyncio.sleep(self._standby_wait())

    def stop(self) -> None:
        """Ask :meth:`run` to return once the batches in flight are handled and committed
        (safe from signal handlers and other threads)."""
        self._stopping = True
        for loop, waker in list(self._wakers):
            if not loop.is_closed():
                loop.call_soon_threadsafe(waker.set)

    async def _pending(self, subs: list[Subscription]) -> bool:
        # A handler of one group may have published to another's topic meanwhile.
        for sub in subs:
            positions = await self._register(sub)
            ends = await self._log.end_offsets(sub.topic)
            if any(end > positions.get(p, 0) for p, end in ends.items()):
                return True
        return False

    async def drain(self, groups: Iterable[str] | None = None) -> None:
        """Process everything pending for ``groups`` (default: all), then return."""
        await self.run(groups, stop_when_idle=True)

    def drain_sync(self, groups: Iterable[str] | None = None) -> None:
        """Sync twin of :meth:`drain`."""
        self._sync(self.drain(groups))

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
        positions = {t: ({} if from_beginning else await self._log.end_offsets(t)) for t in topics}
        while True:
            found = False
            for topic in topics:
                for stored in await self._log.read(topic, positions[topic], self.batch_size):
                    found = True
                    positions[topic][stored.partition] = stored.offset + 1
                    yield decode_event(stored.payload)
            if not found:
                await asyncio.sleep(self.poll_interval)
