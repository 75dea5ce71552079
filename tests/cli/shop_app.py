"""A user's app module for ``--app tests.cli.shop_app:bus``: a bus with a subscriber."""

from __future__ import annotations

import os
from typing import Any

from afterward import job
from afterward.events import Event, EventBus

handled: list[str] = []


@job(tries=2, backoff=(0.01,))
def send_receipt(order_id: str) -> None:
    """A queue job that always fails: the mail provider rejects it."""
    raise ConnectionError(f"receipt for {order_id} bounced")


def make_bus(url: str) -> EventBus:
    """The app's bus at ``url``; its notification handler fails while SHOP_BROKEN=1."""
    bus = EventBus(url)

    @bus.subscribe("order.completed", group="notification", retries=0)
    async def notify(event: Event) -> None:
        if os.environ.get("SHOP_BROKEN") == "1":
            raise ConnectionError(f"mail provider unavailable for {event.data['order_id']}")
        handled.append(event.data["order_id"])

    return bus


def __getattr__(name: str) -> Any:
    if name == "bus":  # built per use, on the bus the test points AFTERWARD_BUS at
        return make_bus(os.environ["AFTERWARD_BUS"])
    raise AttributeError(name)
