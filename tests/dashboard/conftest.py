"""A memory bus with a dead letter whose handler can be mended, for dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from afterward import correlate
from afterward.events import Event, EventBus


@dataclass
class Shop:
    """A bus whose ``notification`` handler fails while ``broken`` is true."""

    bus: EventBus
    broken: bool = True
    sent: list[Any] = field(default_factory=list)
    cid: str = "flow-test-cid-1"


@pytest.fixture
def shop() -> Iterator[Shop]:
    bus = EventBus("memory://")
    state = Shop(bus)

    @bus.subscribe("order.completed", group="notification", retries=1, backoff=(0.001,))
    async def notify(event: Event) -> None:
        if state.broken:
            raise ConnectionError("mail provider unavailable")
        state.sent.append(event.data["order_id"])

    @bus.subscribe("order.completed", group="billing")
    async def bill(event: Event) -> None:
        pass

    with correlate(state.cid):
        bus.publish_sync(
            "order.completed",
            {"order_id": "ORD-1", "note": "<script>alert('x')</script>"},
            key="ORD-1",
        )
    bus.drain_sync()
    assert len(bus.dead_letters()) == 1
    yield state
