"""``afterward consume tests.cli.blocking_app:bus``: a handler that blocks its loop."""

from __future__ import annotations

import os
import time

from afterward import Event, EventBus

bus = EventBus(os.environ["AFTERWARD_BUS"], poll_interval=0.05)


@bus.subscribe("block", group="sleeper")
async def block(event: Event) -> None:
    """Sleep without awaiting: the whole event loop is stuck meanwhile."""
    time.sleep(event.data["seconds"])
