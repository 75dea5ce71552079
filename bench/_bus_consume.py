"""Timing an afterward consumer group: shared by the Kafka and Redis benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["consume_rate"]


async def consume_rate(
    bus: Any,
    topic: str,
    events: int,
    fill_before: Callable[[], Awaitable[object]] | None,
    fill_during: Callable[[], Awaitable[object]] | None,
    *,
    batch: bool = False,
) -> float:
    """Events/s handled by a group on ``bus``: from a topic filled beforehand
    (``fill_before``), or end to end while ``fill_during`` publishes. With ``batch``,
    the group's handler is a batch handler (``subscribe(..., batch=True)``).

    From a filled topic the clock starts at the first event handled, so joining a
    consumer group is not counted (the raw peers start theirs once joined, too).
    """
    from afterward import Event

    done = asyncio.Event()
    seen = 0
    first = 0.0

    def count(handled: int) -> None:
        nonlocal seen, first
        if not seen:
            first = time.perf_counter()
        seen += handled
        if seen >= events:
            done.set()

    if batch:

        @bus.subscribe(topic, group="bench", batch=True)
        async def handle_batch(batch_of: list[Event]) -> None:
            count(len(batch_of))

    else:

        @bus.subscribe(topic, group="bench")
        async def handle(event: Event) -> None:
            count(1)

    if fill_before is not None:
        await fill_before()
    started = time.perf_counter()
    runner = asyncio.create_task(bus.run())
    if fill_during is not None:
        await fill_during()
    await done.wait()
    elapsed = time.perf_counter() - (started if fill_during is not None else first)
    bus.stop()  # a graceful stop: returns once the batch in flight is committed
    await runner
    return events / elapsed
