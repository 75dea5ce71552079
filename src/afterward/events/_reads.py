"""Readers for tools (the CLI, the dashboard): dead letters and failed jobs, filtered.

They take any bus-like object (an :class:`~afterward.EventBus`, or an app's object
with the same methods, sync or async) and prefer the async twins, since a sync twin
blocks on afterward's own loop.
"""

from __future__ import annotations

import inspect
from typing import Any

from afterward.events._job_wire import is_worker_group

__all__ = ["has_failed_jobs", "maybe_await", "read_dead_letters", "read_failed_jobs"]


async def maybe_await(value: Any) -> Any:
    """``await`` ``value`` if it is awaitable (backends differ), else return it."""
    if inspect.isawaitable(value):
        return await value
    return value


async def read_dead_letters(
    bus: Any, group: str | None = None, topic: str | None = None, text: str | None = None
) -> list[Any]:
    """Dead letters of event handlers, filtered by group, topic and a substring of the
    error, the payload or the correlation ID.

    Queue jobs that used up their tries are dead letters of their worker group
    (``afterward.worker.<queue>``): they are left out here and shown as failed jobs.
    """
    reader = getattr(bus, "dead_letters_async", None)  # the sync one blocks on its own loop
    letters = [
        d
        for d in await (reader(group) if reader else maybe_await(bus.dead_letters(group)))
        if not is_worker_group(d.group)
    ]
    needle = (text or "").lower()
    return [
        d
        for d in letters
        if (topic is None or d.event.topic == topic)
        and (
            not needle
            or needle in str(d.error).lower()
            or needle in str(d.event.data).lower()
            or needle in str(d.event.correlation_id).lower()
        )
    ]


def has_failed_jobs(bus: Any) -> bool:
    """Whether the bus keeps a failed-jobs store."""
    return callable(getattr(bus, "failed_jobs", None))


async def read_failed_jobs(
    bus: Any, queue: str | None = None, text: str | None = None
) -> list[Any]:
    """Failed jobs (empty when the bus has no failed-jobs store), filtered."""
    if not has_failed_jobs(bus):
        return []
    reader = getattr(bus, "failed_jobs_async", None)  # the sync one blocks on its own loop
    jobs = list(await (reader(queue) if reader else maybe_await(bus.failed_jobs(queue))))
    needle = (text or "").lower()
    return [j for j in jobs if not needle or needle in str(vars(j)).lower()]
