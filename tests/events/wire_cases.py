"""What the wire tests of each backend share (test_kafka_wire.py, test_redis_wire.py): an
event with every attribute, the attributes a plain client must find, and a CloudEvent
another service writes."""

from __future__ import annotations

from datetime import datetime

from afterward import correlate
from afterward.events import Event, EventBus

__all__ = [
    "DATA",
    "FOREIGN_CLOUDEVENT",
    "FOREIGN_TIME",
    "check_attributes",
    "check_foreign",
    "publish_full",
]

#: The data of :func:`publish_full`'s event (not ASCII: UTF-8 on the wire).
DATA = {"order_id": 7, "note": "café"}

#: A binary-mode CloudEvent's attributes, as another service's producer writes them.
FOREIGN_CLOUDEVENT: list[tuple[str, bytes]] = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"java-42"),
    ("ce_type", b"order.completed"),
    ("ce_source", b"billing-java"),
    ("ce_time", b"2026-12-03T09:00:00Z"),
    ("ce_correlationid", b"flow-9"),
    ("content-type", b"application/json"),
]
FOREIGN_TIME = datetime.fromisoformat("2026-12-03T09:00:00+00:00")


async def publish_full(bus: EventBus) -> Event:
    """Publish to ``order.completed`` an event with a key, a version, a header and a
    correlation ID (the bus's source should be ``shop``)."""
    with correlate("flow-1"):
        return await bus.publish(
            "order.completed", DATA, key="order-7", version=2, headers={"x-tenant": "acme"}
        )


def check_attributes(event: Event, found: dict[str, str]) -> None:
    """``found``, a record's headers (Kafka) or fields (Redis, without ``key`` and
    ``data``) decoded, are exactly the attributes of :func:`publish_full`'s ``event``."""
    assert datetime.fromisoformat(found.pop("ce_time")) == event.occurred_at
    assert found == {
        "ce_specversion": "1.0",
        "ce_id": event.id,
        "ce_type": "order.completed",
        "ce_source": "shop",
        "ce_correlationid": "flow-1",
        "ce_eventversion": "2",
        "content-type": "application/json",
        "x-tenant": "acme",
    }


async def check_foreign(bus: EventBus, seen: list[Event]) -> None:
    """After a drain of group ``billing`` on ``order.completed`` that saw ``seen``: the
    foreign CloudEvent kept its attributes, the garbage at offset 3 (header ``x-from``)
    is the one dead letter, and nothing is left to handle."""
    [cloud] = [e for e in seen if e.id == "java-42"]
    assert (cloud.key, cloud.correlation_id) == ("order-7", "flow-9")
    assert cloud.occurred_at == FOREIGN_TIME
    [letter] = bus.dead_letters()
    assert "not UTF-8" in letter.error and letter.group == "billing"
    # What it shows says where it sat and who wrote it.
    assert (letter.event.id, letter.event.headers) == (
        "order.completed:0:3",
        {"x-from": "a-bad-producer"},
    )
    assert await bus.lag() == {"billing": {"order.completed": 0}}
