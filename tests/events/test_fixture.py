"""The ``afterward_bus`` pytest fixture."""

from __future__ import annotations

import pytest

from afterward.events import Event
from afterward.testing._bus import TestBus


async def test_assert_published(afterward_bus: TestBus) -> None:
    handled: list[int] = []

    @afterward_bus.subscribe("order.completed", group="billing")
    async def bill(event: Event) -> None:
        handled.append(event.data["order_id"])

    await afterward_bus.publish("order.completed", {"order_id": 7}, key="order-7")
    event = afterward_bus.assert_published("order.completed", order_id=7, key="order-7")
    assert event.key == "order-7"
    afterward_bus.assert_not_published("order.completed", order_id=8)
    with pytest.raises(AssertionError, match=r"no event on 'order\.completed'"):
        afterward_bus.assert_published("order.completed", order_id=8)
    with pytest.raises(AssertionError, match="match"):
        afterward_bus.assert_not_published("order.completed", order_id=7)
    await afterward_bus.drain()
    assert handled == [7]
    assert [e.data for e in afterward_bus.published()] == [{"order_id": 7}]


def test_the_fixture_works_in_sync_tests_too(afterward_bus: TestBus) -> None:
    afterward_bus.publish_sync("signup", {"user": "ada"}, key="ada")
    afterward_bus.assert_published("signup", user="ada", key="ada")


async def test_published_keeps_publish_order_within_a_topic(afterward_bus: TestBus) -> None:
    from tests.events.backends import record

    # Two threads publishing: the later append may carry the earlier timestamp.
    await afterward_bus._core.backend.log.append(
        [record("t", 1, id="first", at=20.0), record("t", 2, id="second", at=10.0)]
    )
    assert [e.id for e in afterward_bus.published("t")] == ["first", "second"]


async def test_a_batch_handler_in_the_test_kit(afterward_bus: TestBus) -> None:
    batches: list[list[int]] = []

    @afterward_bus.subscribe("clicks", group="analytics", batch=True)
    async def count(events: list[Event]) -> None:
        batches.append([e.data["n"] for e in events])

    await afterward_bus.publish_many("clicks", [{"data": {"n": n}} for n in range(5)])
    await afterward_bus.drain()
    assert batches == [[0, 1, 2, 3, 4]]  # one fetched batch, one call
