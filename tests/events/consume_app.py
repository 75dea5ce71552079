"""A bus with handlers for ``afterward consume tests.events.consume_app:bus``."""

from __future__ import annotations

import os
import sqlite3

from afterward.events import Event, EventBus

bus = EventBus(os.environ.get("TEST_BUS", "memory://"))


@bus.subscribe("t", group="g")
def handle(event: Event) -> None:
    with sqlite3.connect(os.environ["TEST_EFFECTS"], isolation_level=None, timeout=30) as conn:
        conn.execute("INSERT INTO effects VALUES (?, ?)", (event.id, os.getpid()))


@bus.subscribe("t", group="other")
def other(event: Event) -> None:
    raise AssertionError("not consumed: the CLI asked for group g only")
