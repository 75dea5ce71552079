"""Nothing but cancellation (or stop()) ends ``run()``: a failing backend is retried."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from afterward import BackendUnavailable
from afterward.events import Event, EventBus
from afterward.events._records import StoredEvent


async def test_run_survives_a_backend_that_fails_for_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus("memory://")
    seen: list[Any] = []
    handled = asyncio.Event()

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        seen.append(event.data)
        handled.set()

    log = bus._core.backend.log
    read = log.read
    failures = {"left": 2}

    async def flaky_read(
        topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        if failures["left"]:
            failures["left"] -= 1
            raise BackendUnavailable("the backend is away", backend="memory")
        return await read(topic, positions, limit)

    log.read = flaky_read  # type: ignore[method-assign]
    await bus.publish("t", 1)
    with caplog.at_level("ERROR", logger="afterward.events"):
        running = asyncio.create_task(bus.run())
        async with asyncio.timeout(20):
            await handled.wait()
    assert not running.done()  # still consuming after the failures
    bus.stop()
    await asyncio.wait_for(running, 10)
    assert seen == [1] and failures["left"] == 0
    assert caplog.text.count("starting again") == 2


async def test_drain_reports_a_failing_backend_instead_of_waiting() -> None:
    bus = EventBus("memory://")

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None: ...

    async def broken(*args: object) -> Sequence[StoredEvent]:
        raise BackendUnavailable("the backend is away", backend="memory")

    bus._core.backend.log.read = broken  # type: ignore[method-assign]
    await bus.publish("t", 1)
    with pytest.raises(BackendUnavailable):
        await bus.drain()
