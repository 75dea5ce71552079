"""Retention: storage that stays bounded (API.md section 5, "Retention").

Events older than their topic's retention are deleted from the log in small batches
(one short write each, with the event loop free between them, so publishing and
consuming wait a few milliseconds at most); processed IDs, key versions and flow
history are pruned with the bus's longest retention, so they are kept at least as long
as any event they are about (exactly-once effect holds for every event still in the
log). Dead letters and failed jobs stay until retried or discarded. On Kafka the broker
deletes events itself: the bus sets the topics' ``retention.ms``.

``run()`` prunes in the background (one process of the bus at a time, by a claim);
``bus.prune()`` and ``afterward prune`` run a pass now.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import timedelta

from afterward._exceptions import BackendError, ConfigError
from afterward._stats import incr
from afterward.events._core import BusCore
from afterward.events._records import Pruned

__all__ = ["BATCH", "check_retention", "prune", "pruner", "reach_warning"]

logger = logging.getLogger("afterward.events")

#: Rows deleted per write: small enough that a write lasts a few milliseconds.
BATCH = 1000
_CLAIM = ("afterward.prune", "all")


def check_retention(value: object, what: str = "retention") -> float | None:
    """``value`` (a ``timedelta`` or ``None``: keep everything) as seconds.

    Raises:
        ConfigError: not a positive ``timedelta`` or ``None``.
    """
    if value is None:
        return None
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ConfigError(f"{what} must be a timedelta > 0 or None, got {value!r}")
    return value.total_seconds()


def _longest(core: BusCore, topics: list[str]) -> float | None:
    """The bus's longest retention over ``topics`` and its default: ``None`` if any of
    them keeps everything."""
    kept = [core.retention_of(t) for t in topics] + [core.settings.retention]
    return None if any(k is None for k in kept) else max(k for k in kept if k is not None)


async def prune(core: BusCore) -> Pruned:
    """One pruning pass over every topic of the bus's backend; what it removed."""
    backend = core.backend
    total = Pruned()
    now = time.time()
    topics = await backend.prunable.topics() if backend.prunable is not None else []
    # Every topic the bus knows of: the log's, the ones given a retention, the consumed.
    known = sorted({*topics, *core.retentions, *(t for _, t in core.subs)})
    if backend.retained is not None:
        for topic in known:
            await backend.retained.keep_for(topic, core.retention_of(topic))
    if backend.prunable is not None:
        for topic in topics:
            keep = core.retention_of(topic)
            if keep is None:
                continue
            while True:
                gone = await backend.prunable.prune(topic, now - keep, BATCH)
                total += Pruned(events=gone)
                if gone < BATCH:
                    break
                await asyncio.sleep(0)  # publishers and consumers get in between
    longest = _longest(core, known)
    if backend.state_pruning is not None and longest is not None:
        while True:
            step = await backend.state_pruning.prune_state(now - longest, BATCH)
            total += step
            if max(step.processed, step.versions, step.history) < BATCH:
                break
            await asyncio.sleep(0)
    for kind in ("events", "processed", "versions", "history"):
        incr(f"events.pruned.{kind}", getattr(total, kind))
    return total


def interval(core: BusCore) -> float:
    """Seconds between two background passes: a tenth of the shortest retention, from
    1 s to 5 minutes."""
    known = [core.settings.retention, *core.retentions.values()]
    shortest = min((k for k in known if k is not None), default=None)
    return 300.0 if shortest is None else min(300.0, max(1.0, shortest / 10))


async def pruner(core: BusCore) -> None:
    """Prune every :func:`interval` while ``run()`` consumes, when this process holds the
    bus's prune claim (one process prunes at a time); a failure is logged and retried at
    the next pass."""
    owner = f"{core.owner}.prune.{uuid.uuid4().hex[:6]}"
    state = core.backend.state
    try:
        while not core.stopping:
            every = interval(core)
            try:
                if await state.claim(*_CLAIM, owner, every * 3):
                    pruned = await prune(core)
                    if pruned.events:
                        logger.info("pruned %s", pruned)
            except BackendError as exc:
                logger.warning("pruning failed (%s); trying again in %.0f s", exc, every)
            await asyncio.sleep(every)
    finally:
        try:
            await state.release(*_CLAIM, owner)
        except BackendError:
            pass  # the claim runs out on its own


async def reach_warning(core: BusCore, group: str, topic: str, positions: dict[int, int]) -> None:
    """Log a warning when a replay asks for offsets that retention already deleted."""
    prunable = core.backend.prunable
    if prunable is None:
        return
    first = await prunable.first_offsets(topic)
    gone = {p: o for p, o in positions.items() if o < first.get(p, 0)}
    if gone:
        logger.warning(
            "replay of group %r on %r reaches back past the retention: offsets %s are "
            "deleted; it starts at the oldest kept, %s",
            group,
            topic,
            gone,
            {p: first[p] for p in gone},
        )
