"""What the dashboard charts, read from the bus and this process: samples over time.

The lists (dead letters, failed jobs) come from :mod:`afterward.events`' readers."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from afterward._stats import stats
from afterward.events import maybe_await

__all__ = ["Sample", "Sampler", "counts_from_bus", "counts_from_stats"]

logger = logging.getLogger("afterward.dashboard")

# (kind, group or "", topic) -> running total; kind is "published", "handled" or "failed".
Counts = dict[tuple[str, str, str], int]


_KINDS = {"published": "published", "handled": "handled", "dead_lettered": "failed"}


def counts_from_stats(snapshot: Mapping[str, int] | None = None) -> Counts:
    """Event counters from :func:`afterward.stats` in this process.

    Reads the totals ``events.published``, ``events.handled`` and
    ``events.dead_lettered`` (shown as *failed*), and, when the bus counts them, the
    finer ``events.<kind>:<topic>`` and ``events.<kind>:<group>:<topic>``.
    """
    counts: Counts = {}
    for key, value in (stats() if snapshot is None else snapshot).items():
        name, _, rest = key.partition(":")
        kind = _KINDS.get(name.removeprefix("events.")) if name.startswith("events.") else None
        if kind is None:
            continue
        parts = rest.split(":") if rest else []
        if not parts:
            counts[kind, "", "all topics"] = value
        elif len(parts) == 1:
            counts[kind, "", parts[0]] = value
        else:
            counts[kind, parts[0], ":".join(parts[1:])] = value
    # Per-topic counters, when present, say more than the totals: keep one or the other.
    for kind in set(_KINDS.values()):
        if any(k[0] == kind and k[2] != "all topics" for k in counts):
            counts.pop((kind, "", "all topics"), None)
    return counts


async def counts_from_bus(bus: Any, lag: Mapping[str, Mapping[str, int]]) -> Counts | None:
    """Counts read from the bus itself, so they hold across processes and backends.

    For every topic some group reads: *published* is the number of events stored,
    *handled* per group is how many of them the group has read past (handled, skipped
    as duplicate or stale, or dead-lettered), *failed* is the dead letters it holds
    now. ``None`` when the bus cannot count events.
    """
    counter = getattr(bus, "event_count", None)
    if not callable(counter):
        return None
    counts: Counts = {}
    for topic in sorted({t for topics in lag.values() for t in topics}):
        total = int(await counter(topic))
        counts["published", "", topic] = total
        for group, topics in lag.items():
            if topic in topics:
                counts["handled", group, topic] = max(0, total - topics[topic])
                counts["failed", group, topic] = 0
    reader = getattr(bus, "dead_letters_async", None)
    for letter in await (reader() if reader else maybe_await(bus.dead_letters())):
        key = ("failed", letter.group, letter.event.topic)
        counts[key] = counts.get(key, 0) + 1
    return counts


@dataclass
class Sample:
    """One reading: when, the running totals and the lag per group and topic."""

    at: float
    counts: Counts
    lag: dict[str, dict[str, int]] = field(default_factory=dict)


class Sampler:
    """Readings taken every ``interval`` seconds, the last ``keep`` of them kept.

    Once :meth:`start` ran, a background task on that loop samples on its own, so the
    charts show the numbers over time whether or not a page was open (the dashboard
    starts it in its lifespan, or on its first request when mounted inside another app,
    which gives it no lifespan). A page asking meanwhile gets the newest reading, or a
    new one when that is older than ``interval``. Counts come from ``counts`` when
    given, else from the bus (:func:`counts_from_bus`), else from this process's
    :func:`afterward.stats`. Memory is bounded: ``keep`` readings.
    """

    def __init__(
        self,
        bus: Any,
        *,
        interval: float = 2.0,
        keep: int = 90,
        counts: Callable[[], Counts] | None = None,
    ) -> None:
        self.bus = bus
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._counts = counts
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the background task is sampling."""
        task = self._task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def start(self) -> None:
        """Sample in the background on the running loop from now on (idempotent)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._keep_sampling())

    async def stop(self) -> None:
        """Stop the background task (the readings are kept)."""
        task, self._task = self._task, None
        if task is not None and not task.get_loop().is_closed():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _keep_sampling(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as exc:  # the bus is away: the next round tries again
                logger.warning("dashboard: cannot sample %r: %s", self.bus, exc)
            await asyncio.sleep(self.interval)

    async def sample(self) -> Sample:
        """Take a reading unless the last one is fresh; return the newest."""
        now = time.time()
        if self.samples and now - self.samples[-1].at < self.interval:
            return self.samples[-1]
        lag: dict[str, dict[str, int]] = await self.bus.lag()
        counts = self._counts() if self._counts else await counts_from_bus(self.bus, lag)
        if counts is None:
            counts = counts_from_stats()
        reading = Sample(now, counts, {g: dict(t) for g, t in lag.items()})
        self.samples.append(reading)
        return reading

    def series(self, kind: str) -> list[float]:
        """Per-interval increments of ``kind`` summed over topics and groups."""
        totals = [sum(v for k, v in s.counts.items() if k[0] == kind) for s in self.samples]
        return [max(0, b - a) for a, b in itertools.pairwise(totals)]

    def lag_series(self) -> dict[str, list[float]]:
        """Lag per ``group/topic`` at each sample kept (0 before a pair first appears)."""
        pairs = sorted({(g, t) for s in self.samples for g, ts in s.lag.items() for t in ts})
        return {
            f"{g}/{t}": [float(s.lag.get(g, {}).get(t, 0)) for s in self.samples] for g, t in pairs
        }

    def rows(self) -> list[dict[str, Any]]:
        """Per (kind, group, topic): total and the increments of the samples kept."""
        if not self.samples:
            return []
        keys = sorted({k for s in self.samples for k in s.counts})
        rows = []
        for key in keys:
            values = [s.counts.get(key, 0) for s in self.samples]
            rows.append(
                {
                    "kind": key[0],
                    "group": key[1],
                    "topic": key[2],
                    "total": values[-1],
                    "recent": values[-1] - values[0],
                }
            )
        return rows
