"""Operating a bus: lag and ``on_lag``, replay, dead letters (list, retry, discard).

A base class of :class:`~afterward.events.EventBus`, kept apart so each file reads alone.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from afterward._exceptions import ConfigError, NotFoundError
from afterward._loop import run_sync
from afterward._stats import incr
from afterward.events._backend import AppendRecord, Attempt, Done, EventLog, FlowLog
from afterward.events._consume import Subscription, attempt_of, error_text, run_handler
from afterward.events._envelope import DeadLetter, Event, decode_event, validate_topic
from afterward.events._lag import LagCallback, LagWatch

__all__ = ["BusAdmin"]

T = TypeVar("T")


def _check_id(value: object, what: str = "dead letter ID") -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a {what} must be a non-empty str, got {value!r}")
    return value


def _key_of(payload: bytes) -> str | None:
    key: str | None = json.loads(payload)["key"]
    return key


def _id_of(payload: bytes) -> str:
    event_id: str = json.loads(payload)["id"]
    return event_id


def _correlation_of(payload: bytes) -> str | None:
    cid: str | None = json.loads(payload)["correlation_id"]
    return cid


class BusAdmin:
    """Lag, replay and dead-letter operations of an :class:`~afterward.EventBus`."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._watches: list[LagWatch] = []
        self.keep_history = True

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        return run_sync(coro)

    async def _register(self, sub: Subscription) -> dict[int, int]:
        raise NotImplementedError  # provided by EventBus

    # -- lag --------------------------------------------------------------------------

    async def lag(self) -> dict[str, dict[str, int]]:
        """Events published but not yet processed, per group and topic.

        Lists every group registered in the backend and every group subscribed on this
        bus (a subscribed group that never consumed counts from where it will start).
        Runs the ``on_lag`` checks.
        """
        pairs = {(g, t) for g, topics in (await self._log.groups()).items() for t in topics}
        pairs |= set(self._subs)
        result: dict[str, dict[str, int]] = {}
        for group, topic in sorted(pairs):
            sub = self._subs.get((group, topic))
            positions = await self._log.positions(group, topic)
            if positions is None:
                positions = await self._register(sub) if sub is not None else {}
            ends = await self._log.end_offsets(topic)
            lag = sum(max(0, end - positions.get(p, 0)) for p, end in ends.items())
            result.setdefault(group, {})[topic] = lag
            for watch in self._watches:
                await watch.check(group, topic, lag)
        return result

    def lag_sync(self) -> dict[str, dict[str, int]]:
        """Sync twin of :meth:`lag`."""
        return self._sync(self.lag())

    def on_lag(self, threshold: int = 10_000, callback: LagCallback | None = None) -> None:
        """Call ``callback(group, topic, lag)`` when a lag reaches ``threshold``.

        Checked on every :meth:`lag` call and while :meth:`drain`/:meth:`run` consume. It
        fires when the lag goes from below the threshold to at or above it (the first
        reading included), and again only after it has dropped below and crossed again.
        The callback may be sync or async; if it raises, the error is logged and counted
        (``hooks.failed``).
        """
        if callback is None:
            raise ConfigError("on_lag needs a callback(group, topic, lag)")
        self._watches.append(LagWatch(threshold, callback))

    # -- replay -----------------------------------------------------------------------

    async def replay(
        self,
        topic: str,
        group: str,
        *,
        since: datetime | None = None,
        from_offset: int | None = None,
        reprocess: bool = False,
    ) -> None:
        """Rewind ``group`` on ``topic`` so its consumers read again from there.

        Args:
            topic: the topic.
            group: the group to rewind.
            since: the first event at or after this time (an aware datetime).
            from_offset: this offset in every partition of the topic.
            reprocess: also forget the group's processed IDs (and key versions) for the
                topic, so events it already handled run again; otherwise they are skipped.

        Raises:
            ConfigError: neither or both of ``since`` and ``from_offset``, or bad values.
        """
        validate_topic(topic)
        if not isinstance(group, str) or not group:
            raise ConfigError(f"group must be a non-empty str, got {group!r}")
        if (since is None) == (from_offset is None):
            raise ConfigError("replay needs exactly one of since= and from_offset=")
        if since is not None:
            if not isinstance(since, datetime) or since.tzinfo is None:
                raise ConfigError(f"since must be an aware datetime, got {since!r}")
            positions = await self._log.offsets_for_time(topic, since)
        else:
            if isinstance(from_offset, bool) or not isinstance(from_offset, int) or from_offset < 0:
                raise ConfigError(f"from_offset must be an int >= 0, got {from_offset!r}")
            ends = await self._log.end_offsets(topic) or {0: 0}
            positions = {p: min(from_offset, end) for p, end in ends.items()}
        await self._log.register(group, topic, positions)
        await self._log.rewind(group, topic, positions, forget=reprocess)

    # -- dead letters -----------------------------------------------------------------

    async def dead_letters_async(self, group: str | None = None) -> list[DeadLetter]:
        """Async twin of :meth:`dead_letters`."""
        if group is not None:
            _check_id(group, "group")
        return [
            DeadLetter(
                id=d.id,
                event=decode_event(d.payload, attempt=d.attempts),
                group=d.group,
                error=d.error,
                traceback=d.traceback,
                attempts=d.attempts,
                failed_at=d.failed_at,
            )
            for d in await self._log.dead_letters(group)
        ]

    def dead_letters(self, group: str | None = None) -> list[DeadLetter]:
        """Dead letters (of ``group`` when given), oldest first."""
        return self._sync(self.dead_letters_async(group))

    async def retry_dead_letter(self, dead_letter_id: str) -> bool:
        """Run the dead letter's event through its group's handler again, now.

        The handler sees the original event (same ID, same correlation ID) with the next
        attempt number. On success the letter leaves the list and the event counts as
        processed; on failure the letter stays, with the new error and attempt count. If
        the group has processed that event ID since (it was published again), the
        handler does not run and the letter just leaves the list.

        Without that group's handler on this bus (the CLI, the dashboard), the event is
        appended to its topic again with the same ID instead, for the group's consumers
        to run: other groups skip it as already processed.

        Returns:
            True when the handler succeeded (or the event was handed back to the topic).

        Raises:
            NotFoundError: no dead letter has that ID.
        """
        stored = await self._log.dead_letter(_check_id(dead_letter_id))
        if stored is None:
            raise NotFoundError(f"no dead letter with ID {dead_letter_id!r}")
        sub = self._subs.get((stored.group, stored.topic))
        if sub is None:
            # No handler here (the CLI, the dashboard): hand the event back to the log
            # with the same ID. Groups that processed it skip it; its group runs it.
            await self._log.append(
                [
                    AppendRecord(
                        stored.topic,
                        _key_of(stored.payload),
                        _id_of(stored.payload),
                        stored.failed_at.timestamp(),
                        stored.payload,
                        _correlation_of(stored.payload),
                    )
                ]
            )
            await self._log.delete_dead_letter(dead_letter_id)
            return True
        event = decode_event(stored.payload)
        if await self._log.processed(stored.group, [event.id]):
            # The group ran it successfully meanwhile (the producer published the same
            # ID again, or the letter was handed back): never a second successful run.
            await self._log.delete_dead_letter(dead_letter_id)
            incr("events.duplicate")
            return True
        retry_sub = replace(sub, retries=0)
        flow = self._log if self.keep_history and isinstance(self._log, FlowLog) else None
        history: list[Attempt] | None = [] if flow is not None else None
        attempts, error, tb = await run_handler(retry_sub, event, stored.attempts + 1, history)
        if flow is not None and history is not None:
            if error is not None:
                history.append(
                    attempt_of(retry_sub, event, attempts, "dead_lettered", error_text(error))
                )
            await flow.add_attempts(history)
        if error is None:
            await self._log.commit(
                stored.group, stored.topic, {}, [Done(event.id, event.key, event.version)]
            )
            await self._log.delete_dead_letter(dead_letter_id)
            incr("events.handled")
            return True
        await self._log.update_dead_letter(
            replace(stored, error=error_text(error), traceback=tb, attempts=attempts)
        )
        return False

    def retry_dead_letter_sync(self, dead_letter_id: str) -> bool:
        """Sync twin of :meth:`retry_dead_letter`."""
        return self._sync(self.retry_dead_letter(dead_letter_id))

    async def discard_dead_letter(self, dead_letter_id: str) -> None:
        """Delete a dead letter for good.

        Raises:
            NotFoundError: no dead letter has that ID.
        """
        if not await self._log.delete_dead_letter(_check_id(dead_letter_id)):
            raise NotFoundError(f"no dead letter with ID {dead_letter_id!r}")

    def discard_dead_letter_sync(self, dead_letter_id: str) -> None:
        """Sync twin of :meth:`discard_dead_letter`."""
        self._sync(self.discard_dead_letter(dead_letter_id))

    # -- flows (backends with the FlowLog capability) ---------------------------------

    async def events_for_async(self, correlation_id: str, limit: int = 1000) -> list[Event]:
        """Async twin of :meth:`events_for`."""
        _check_id(correlation_id, "correlation ID")
        if not isinstance(self._log, FlowLog):
            return []
        return [decode_event(s.payload) for s in await self._log.events_for(correlation_id, limit)]

    def events_for(self, correlation_id: str, limit: int = 1000) -> list[Event]:
        """The stored events with that correlation ID (up to ``limit``), oldest first.

        Reads the bus's storage, so it works from another process (``afterward
        dashboard --bus ...``). Supported on ``memory://`` and ``sqlite://``; other
        backends return ``[]``.

        Example:
            >>> [e.topic for e in bus.events_for(cid)]
            ['order.completed', 'afterward.jobs.default']
        """
        return self._sync(self.events_for_async(correlation_id, limit))

    async def history_async(self, correlation_id: str, limit: int = 1000) -> list[Attempt]:
        """Async twin of :meth:`history`."""
        _check_id(correlation_id, "correlation ID")
        if not isinstance(self._log, FlowLog):
            return []
        return await self._log.attempts_for(correlation_id, limit)

    def history(self, correlation_id: str, limit: int = 1000) -> list[Attempt]:
        """What every group did with that correlation ID's events, oldest first.

        One :class:`~afterward.events.Attempt` per handler run (``handled``,
        ``failed``), dead letter (``dead_lettered``) and skip (``duplicate``,
        ``stale``), with its time and error; dead-letter retries included. The bus
        records them with each batch it commits (so a run in progress shows once its
        batch is done). Supported on ``memory://`` (the newest 10,000 attempts of the
        store) and ``sqlite://`` (kept with the events); other backends return ``[]``,
        and so does a bus made with ``keep_history=False`` for what it consumed.
        """
        return self._sync(self.history_async(correlation_id, limit))
