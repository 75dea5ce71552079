"""CloudEvents on the wire and foreign records (API.md section 5, "On the wire"), without
a broker: what afterward writes, and what it makes of records others wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from afterward import PublishError
from afterward.events import Event, EventBus
from afterward.events._wire import (
    UndecodableRecord,
    decode,
    encode,
    pack_headers,
    unpack_headers,
)

WHEN = datetime(2026, 12, 2, 10, 30, 0, 123456, tzinfo=UTC)


def test_an_event_is_written_as_a_binary_cloudevent() -> None:
    event = Event(
        id="e-1",
        topic="order.completed",
        data={"order_id": 7, "note": "café"},
        key="order-7",
        version=3,
        correlation_id="cid-1",
        occurred_at=WHEN,
        headers={"x-tenant": "acme"},
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    trace = event.traceparent
    assert trace is not None
    value, headers = encode(event, "shop")
    assert json.loads(value) == {"order_id": 7, "note": "café"}
    assert "café".encode() in value  # UTF-8, not \\u escapes
    found = dict(headers)
    assert found == {
        "ce_specversion": b"1.0",
        "ce_id": b"e-1",
        "ce_type": b"order.completed",
        "ce_source": b"shop",
        "ce_time": b"2026-12-02T10:30:00.123456+00:00",
        "content-type": b"application/json",
        "ce_correlationid": b"cid-1",
        "ce_eventversion": b"3",
        "traceparent": trace.encode(),
        "x-tenant": b"acme",
    }
    back = decode("order.completed", 0, 9, value, headers, b"order-7")
    assert (back.id, back.key, back.version, back.correlation_id) == ("e-1", "order-7", 3, "cid-1")
    assert back.occurred_at == WHEN and back.headers == {"x-tenant": "acme"}
    assert back.data == event.data
    assert (back.traceparent, back.tracestate) == (trace, None)


def test_the_trace_context_travels_in_traceparent_and_tracestate() -> None:
    trace = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    event = Event("e-2", "t", {}, traceparent=trace, tracestate="vendor=1")
    value, headers = encode(event, "shop")
    assert (b"traceparent" not in value) and ("tracestate", b"vendor=1") in headers
    back = decode("t", 0, 0, value, headers)
    assert (back.traceparent, back.tracestate) == (trace, "vendor=1")
    assert "traceparent" not in back.headers  # not one of the event's own headers


def test_a_plain_json_record_gets_a_stable_id_from_where_it_sits() -> None:
    event = decode("orders", 2, 41, b'{"order_id": 5}', (), b"order-5", 1_700_000_000.5)
    assert event.id == "orders:2:41"  # the same on every redelivery
    assert event.data == {"order_id": 5} and event.key == "order-5"
    assert event.occurred_at == datetime.fromtimestamp(1_700_000_000.5, UTC)
    assert event.correlation_id is None and event.version is None


def test_a_foreign_binary_cloudevent_keeps_its_id() -> None:
    headers = (("ce_id", b"their-id"), ("ce_specversion", b"1.0"), ("ce_type", b"x"))
    assert decode("orders", 0, 1, b"[1, 2]", headers).id == "their-id"


def test_a_structured_cloudevent_gives_its_attributes_and_data() -> None:
    envelope = {
        "specversion": "1.0",
        "id": "s-1",
        "type": "order.completed",
        "source": "/php/shop",
        "time": "2026-12-02T10:30:00Z",
        "correlationid": "cid-9",
        "data": {"order_id": 9},
    }
    for headers in ((("content-type", b"application/cloudevents+json"),), ()):
        event = decode("orders", 0, 3, json.dumps(envelope).encode(), headers)
        assert (event.id, event.data, event.correlation_id) == ("s-1", {"order_id": 9}, "cid-9")
        assert event.occurred_at == datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", [b"\x00\xffnot json", b"{broken", "café".encode("latin-1")])
def test_bytes_that_are_not_json_are_undecodable_unless_raw(value: bytes) -> None:
    with pytest.raises(UndecodableRecord):
        decode("t", 0, 0, value, ())
    assert decode("t", 0, 0, value, (), raw=True).data == value


def test_headers_survive_packing_even_when_they_are_not_utf8() -> None:
    headers = (("ce_id", b"e"), ("binary", b"\xff\x00"), ("text", "é".encode()))
    assert unpack_headers(pack_headers(headers)) == headers


@pytest.mark.parametrize("name", ["ce_id", "CE_type", "content-type", "traceparent"])
async def test_headers_that_would_clash_with_cloudevents_are_refused(name: str) -> None:
    bus = EventBus("memory://")
    with pytest.raises(PublishError, match="reserved"):
        await bus.publish("t", 1, headers={name: "x"})
    assert await bus.event_count("t") == 0


async def test_the_source_is_the_bus_s_and_defaults_to_the_program() -> None:
    assert EventBus("memory://").settings.source  # the program's name, never empty
    bus = EventBus("memory://", source="shop")
    await bus.publish("t", 1)
    (stored,) = await bus._core.backend.log.read("t", {}, 10)
    assert dict(stored.headers)["ce_source"] == b"shop"
