"""``memory://``: the reference backend, and the test double behind ``afterward_bus``.

``EventBus("memory://")`` gets a private store. ``memory://NAME`` names a store shared by
every bus opened on the same URL in this process while one of them is alive (handy for
tests that want a second consumer). One partition per topic.

It has every capability: the log and its state (:mod:`._log`), flows (events indexed by
correlation ID, the newest ``HISTORY_LIMIT`` attempts kept) and the work queue with its
failed jobs (:mod:`._queue`).
"""

from __future__ import annotations

from collections.abc import Callable

from afterward.events._backend import Backend
from afterward.events.backends.memory._log import HISTORY_LIMIT, MemoryLog, store_of, stored_of
from afterward.events.backends.memory._queue import MemoryQueue

__all__ = ["HISTORY_LIMIT", "MemoryLog", "MemoryQueue", "open_backend", "stored_of"]


def open_backend(url: str, open_store: Callable[[str], Backend]) -> Backend:
    """The backend of a ``memory://`` URL: one store holds everything."""
    store = store_of(url)
    return Backend.of(MemoryLog(store), jobs=MemoryQueue(store))
