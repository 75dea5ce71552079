"""The ``afterward_bus`` fixture: a private in-memory bus that can assert on what was
published."""

from __future__ import annotations

from typing import Any

import pytest

from afterward.events import Event, EventBus
from afterward.events._wire import decode_stored
from afterward.events.backends.memory import MemoryLog, stored_of

__all__ = ["TestBus", "afterward_bus"]

_MISSING = object()


def _field(event: Event, name: str) -> Any:
    if isinstance(event.data, dict) and name in event.data:
        return event.data[name]
    return getattr(event, name, _MISSING) if name in Event.__dataclass_fields__ else _MISSING


class TestBus(EventBus):
    """An :class:`~afterward.EventBus` on ``memory://`` with assertions for tests."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, **options: Any) -> None:
        super().__init__("memory://", **options)

    def published(self, topic: str | None = None) -> list[Event]:
        """Every event published so far (to ``topic`` when given), in publish order."""
        log = self._core.backend.log
        assert isinstance(log, MemoryLog)
        if topic is not None:
            # The log's own order: timestamps need not ascend (publishing threads).
            return [decode_stored(stored_of(r, n)) for n, r in log.records(topic)]
        # Across topics only the publish times order them (a stable sort keeps ties).
        records = sorted(
            (item for name in list(log._store.logs) for item in log.records(name)),
            key=lambda item: item[1].timestamp,
        )
        return [decode_stored(stored_of(r, n)) for n, r in records]

    def _matching(self, topic: str, match: dict[str, Any]) -> list[Event]:
        return [
            e
            for e in self.published(topic)
            if all(_field(e, name) == value for name, value in match.items())
        ]

    def assert_published(self, topic: str, **match: Any) -> Event:
        """Assert an event was published to ``topic`` whose fields match; return it.

        Each keyword is compared with the event's data field of that name when the data
        is a dict holding it, else with the envelope field (``key``, ``version``,
        ``correlation_id``, ``headers``...).

        Example:
            >>> afterward_bus.assert_published("order.completed", order_id=7, key="order-7")
        """
        found = self._matching(topic, match)
        if not found:
            seen = [(e.key, e.data) for e in self.published(topic)]
            raise AssertionError(
                f"no event on {topic!r} matches {match!r}; published there: {seen!r}"
            )
        return found[0]

    def assert_not_published(self, topic: str, **match: Any) -> None:
        """Assert no event published to ``topic`` matches ``match``."""
        found = self._matching(topic, match)
        if found:
            raise AssertionError(f"{len(found)} event(s) on {topic!r} match {match!r}")


@pytest.fixture
def afterward_bus() -> TestBus:
    """A private in-memory bus (``EventBus("memory://")``) with ``assert_published``.

    A plain (sync) fixture, so it works in sync tests and in async tests under any
    async plugin: the memory backend holds no connection to open or close.

    Example:
        >>> async def test_checkout_publishes(afterward_bus):
        ...     await checkout(bus=afterward_bus, order_id=7)
        ...     afterward_bus.assert_published("order.completed", order_id=7)
        ...     await afterward_bus.drain()            # run the subscribed handlers
    """
    return TestBus()
