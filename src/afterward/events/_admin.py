"""Operating a bus: lag and ``on_lag``, replay, dead letters (list, retry, discard),
flows: the :class:`Operating` methods of :class:`~afterward.EventBus`."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime

from afterward._exceptions import ConfigError, NotFoundError
from afterward._stats import incr
from afterward.events._core import BusCore
from afterward.events._envelope import DeadLetter, Event, validate_topic
from afterward.events._handler import attempt_of, error_text, run_handler
from afterward.events._lag import LagCallback, LagWatch
from afterward.events._protocols import PositionsAtOnce
from afterward.events._prune import reach_warning
from afterward.events._records import Attempt, Done, StoredDeadLetter
from afterward.events._subscription import check_group
from afterward.events._wire import UndecodableRecord, decode_stored, record_of, stand_in

__all__ = ["Operating", "discard_dead_letter"]


def _check_id(value: object, what: str = "dead letter ID") -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a {what} must be a non-empty str, got {value!r}")
    return value


def _event_of(letter: StoredDeadLetter) -> Event:
    """The letter's event, or a stand-in holding the record's text when it cannot be read
    (its ID where the record sat)."""
    try:
        return decode_stored(letter.record, attempt=letter.attempts)
    except UndecodableRecord:
        return stand_in(letter.record, attempt=letter.attempts)


async def discard_dead_letter(core: BusCore, dead_letter_id: str) -> None:
    """Delete a dead letter (and its mirror's copy).

    Raises:
        NotFoundError: no dead letter has that ID.
    """
    backend = core.backend
    letter = await backend.state.dead_letter(_check_id(dead_letter_id))
    if letter is None or not await backend.state.delete_dead_letter(dead_letter_id):
        raise NotFoundError(f"no dead letter with ID {dead_letter_id!r}")
    if backend.mirror is not None:
        await backend.mirror.mirror_dead_letter(letter, removed=True)


class Operating:
    """Lag, replay, dead-letter and flow methods of :class:`~afterward.EventBus`."""

    _core: BusCore

    # -- lag --------------------------------------------------------------------------

    async def lag(self) -> dict[str, dict[str, int]]:
        """Events published but not yet processed, per group and topic.

        Lists every group registered in the backend and every group subscribed on this
        bus (a subscribed group that never consumed counts from where it will start).
        Runs the ``on_lag`` checks.
        """
        core = self._core
        state = core.backend.state
        known: dict[tuple[str, str], dict[int, int]] | None = None
        if isinstance(state, PositionsAtOnce):  # one read for every pair
            known = await state.every_position()
            pairs = set(known)
        else:
            pairs = {(g, t) for g, topics in (await state.groups()).items() for t in topics}
        pairs |= set(core.subs)
        result: dict[str, dict[str, int]] = {}
        ends: dict[str, dict[int, int]] = {}  # one read per topic, not per group and topic
        for group, topic in sorted(pairs):
            sub = core.subs.get((group, topic))
            if known is not None:
                positions = known.get((group, topic))
            else:
                positions = await state.positions(group, topic)
            if positions is None:
                positions = await core.positions_of(sub) if sub is not None else {}
            result.setdefault(group, {})[topic] = await core.lag_of(group, topic, positions, ends)
        return result

    def lag_sync(self) -> dict[str, dict[str, int]]:
        """Sync twin of :meth:`lag`."""
        return self._core.sync(self.lag())

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
        self._core.watches.append(LagWatch(threshold, callback))

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
        check_group(group)
        if (since is None) == (from_offset is None):
            raise ConfigError("replay needs exactly one of since= and from_offset=")
        if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
            raise ConfigError(f"since must be an aware datetime, got {since!r}")
        if from_offset is not None and (
            isinstance(from_offset, bool) or not isinstance(from_offset, int) or from_offset < 0
        ):
            raise ConfigError(f"from_offset must be an int >= 0, got {from_offset!r}")
        log, state = self._core.backend.log, self._core.backend.state
        if since is not None:
            positions = await log.offsets_for_time(topic, since)
        else:
            ends = await log.end_offsets(topic) or {0: 0}
            positions = {p: min(from_offset or 0, end) for p, end in ends.items()}
        await reach_warning(self._core, group, topic, positions)
        await state.register(group, topic, positions)
        await state.rewind(group, topic, positions, forget=reprocess)

    # -- dead letters -----------------------------------------------------------------

    async def dead_letters_async(self, group: str | None = None) -> list[DeadLetter]:
        """Async twin of :meth:`dead_letters`."""
        if group is not None:
            check_group(group)
        return [
            DeadLetter(
                id=d.id,
                event=_event_of(d),
                group=d.group,
                error=d.error,
                traceback=d.traceback,
                attempts=d.attempts,
                failed_at=d.failed_at,
            )
            for d in await self._core.backend.state.dead_letters(group)
        ]

    def dead_letters(self, group: str | None = None) -> list[DeadLetter]:
        """Dead letters (of ``group`` when given), oldest first."""
        return self._core.sync(self.dead_letters_async(group))

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
        core = self._core
        state = core.backend.state
        stored = await state.dead_letter(_check_id(dead_letter_id))
        if stored is None:
            raise NotFoundError(f"no dead letter with ID {dead_letter_id!r}")
        sub = core.subs.get((stored.group, stored.topic))
        try:
            event = decode_stored(stored.record, raw=sub is not None and sub.raw)
        except UndecodableRecord as exc:
            # The same bytes cannot be read now either: the letter stays.
            await state.update_dead_letter(replace(stored, error=f"UndecodableRecord: {exc}"))
            return False
        if sub is None:
            # No handler here (the CLI, the dashboard): hand the event back to the log
            # with the same ID. Groups that processed it skip it; its group runs it.
            await core.backend.log.append([record_of(event, core.settings.source)])
            await discard_dead_letter(core, dead_letter_id)
            return True
        if await state.processed(stored.group, [event.id]):
            # The group ran it successfully meanwhile (the producer published the same
            # ID again, or the letter was handed back): never a second successful run.
            await discard_dead_letter(core, dead_letter_id)
            incr("events.duplicate", labels=(stored.group, stored.topic))
            return True
        retry_sub = replace(sub, retries=0)
        flow = core.backend.flow if core.settings.keep_history else None
        history: list[Attempt] | None = [] if flow is not None else None
        attempts, error, tb = await run_handler(
            retry_sub, event, stored.attempts + 1, history, system=core.backend.scheme
        )
        if flow is not None and history is not None:
            if error is not None:
                history.append(
                    attempt_of(retry_sub, event, attempts, "dead_lettered", error_text(error))
                )
            await flow.add_attempts(history)
        if error is None:
            await state.commit(
                stored.group, stored.topic, {}, [Done(event.id, event.key, event.version)]
            )
            await discard_dead_letter(core, dead_letter_id)
            incr("events.handled", labels=(stored.group, stored.topic))
            return True
        await state.update_dead_letter(
            replace(stored, error=error_text(error), traceback=tb, attempts=attempts)
        )
        return False

    def retry_dead_letter_sync(self, dead_letter_id: str) -> bool:
        """Sync twin of :meth:`retry_dead_letter`."""
        return self._core.sync(self.retry_dead_letter(dead_letter_id))

    async def discard_dead_letter(self, dead_letter_id: str) -> None:
        """Delete a dead letter for good.

        Raises:
            NotFoundError: no dead letter has that ID.
        """
        await discard_dead_letter(self._core, dead_letter_id)

    def discard_dead_letter_sync(self, dead_letter_id: str) -> None:
        """Sync twin of :meth:`discard_dead_letter`."""
        self._core.sync(self.discard_dead_letter(dead_letter_id))

    # -- flows (backends with the FlowLog capability) ---------------------------------

    async def events_for_async(self, correlation_id: str, limit: int = 1000) -> list[Event]:
        """Async twin of :meth:`events_for`."""
        _check_id(correlation_id, "correlation ID")
        flow = self._core.backend.flow
        if flow is None:
            return []
        found = []
        for stored in await flow.events_for(correlation_id, limit):
            with contextlib.suppress(UndecodableRecord):  # a flow shows what it can read
                found.append(decode_stored(stored))
        return found

    def events_for(self, correlation_id: str, limit: int = 1000) -> list[Event]:
        """The stored events with that correlation ID (up to ``limit``), oldest first.

        Reads the bus's storage, so it works from another process (``afterward
        dashboard --bus ...``). Supported on ``memory://`` and ``sqlite://``; other
        backends return ``[]``.

        Example:
            >>> [e.topic for e in bus.events_for(cid)]
            ['order.completed', 'afterward.jobs.default']
        """
        return self._core.sync(self.events_for_async(correlation_id, limit))

    async def history_async(self, correlation_id: str, limit: int = 1000) -> list[Attempt]:
        """Async twin of :meth:`history`."""
        _check_id(correlation_id, "correlation ID")
        flow = self._core.backend.flow
        if flow is None:
            return []
        return await flow.attempts_for(correlation_id, limit)

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
        return self._core.sync(self.history_async(correlation_id, limit))
