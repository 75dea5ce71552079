"""The event consumers of the demo: billing, notification and analytics groups.

Notification talks to a mail provider that is down for some orders (``fail_rate``):
for those, every automatic attempt fails, the event becomes a dead letter, and a retry
from the dashboard (the provider is back by then) succeeds.
"""

from __future__ import annotations

import random
from typing import Any

from afterward.dashboard import Recorder
from afterward.events import Event, EventBus

__all__ = ["subscribe_consumers"]

RETRIES = 2
BACKOFF = (0.05, 0.2)


def subscribe_consumers(
    bus: EventBus, recorder: Recorder, fail_rate: float, rng: random.Random, ledger: dict[str, Any]
) -> None:
    """Subscribe the three groups to ``order.completed`` on ``bus``."""
    failures_left: dict[str, int] = {}

    def note(group: str, event: Event, ok: bool, error: str | None = None) -> None:
        title = (
            f"{group} handled attempt {event.attempt}"
            if ok
            else f"{group} attempt {event.attempt} failed"
        )
        recorder.record(event.correlation_id, "handler", title, ok=ok, event=event.id, error=error)

    @bus.subscribe("order.completed", group="billing", retries=RETRIES, backoff=BACKOFF)
    async def create_invoice(event: Event) -> None:
        ledger.setdefault("invoices", []).append(event.data["order_id"])
        note("billing", event, True)

    @bus.subscribe("order.completed", group="notification", retries=RETRIES, backoff=BACKOFF)
    async def send_confirmation(event: Event) -> None:
        if event.id not in failures_left:
            down = rng.random() < fail_rate
            failures_left[event.id] = RETRIES + 1 if down else 0
        if failures_left[event.id] > 0:
            failures_left[event.id] -= 1
            error = "mail provider unavailable (503)"
            note("notification", event, False, error)
            raise ConnectionError(error)
        ledger.setdefault("emails", []).append(event.data["order_id"])
        note("notification", event, True)

    @bus.subscribe("order.completed", group="analytics", retries=RETRIES, backoff=BACKOFF)
    async def track_sale(event: Event) -> None:
        ledger.setdefault("sales", []).append(event.data["total"])
        note("analytics", event, True)
