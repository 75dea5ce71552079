"""Redis stream entries on the wire (API.md section 5, "On the wire", "Foreign records"):
what plain redis-py sees of afterward's entries, and what afterward makes of entries
redis-py added, with ``0-*`` (the documented way) or an automatic ID (``*``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from afterward.events import Event, EventBus
from afterward.events.backends.redis import RedisLog
from tests.events.backends import record
from tests.events.distributed import REDIS, redis_bus_url
from tests.events.wire_cases import (
    DATA,
    FOREIGN_CLOUDEVENT,
    check_attributes,
    check_foreign,
    publish_full,
)

pytestmark = pytest.mark.redis

#: drain() must return: a hang fails the test instead of the run.
DRAIN_DEADLINE = 20.0

#: A CloudEvent another service adds: its attributes as fields, then key and data.
CLOUDEVENT = {
    **{name: value for name, value in FOREIGN_CLOUDEVENT},
    "key": b"order-7",
    "data": json.dumps({"order_id": 7}).encode(),
}


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    """A plain, synchronous redis-py client, as another service would use."""
    client = redis.Redis.from_url(REDIS)
    try:
        yield client
    finally:
        client.close()


def _stream(url: str, topic: str) -> str:
    return url.split("prefix=", 1)[1] + "stream:" + topic


def _entries(raw: redis.Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The stream's entries as redis-py gives them (bytes: no decode_responses)."""
    found: Any = raw.xrange(stream)
    return [(entry_id, fields) for entry_id, fields in found]


async def _drain(bus: EventBus) -> None:
    async with asyncio.timeout(DRAIN_DEADLINE):
        await bus.drain()


@pytest.mark.parametrize("entry_id", ["0-*", "*"])
async def test_entries_from_redis_py_are_events_and_garbage_is_one_dead_letter(
    tmp_path: Path, raw: redis.Redis, entry_id: str
) -> None:
    url = redis_bus_url(tmp_path)
    stream = _stream(url, "order.completed")
    seen: list[Event] = []
    async with EventBus(url) as bus:

        @bus.subscribe("order.completed", group="billing", retries=0)
        async def handle(event: Event) -> None:
            seen.append(event)

        first = await bus.publish("order.completed", {"n": 1})
        raw.xadd(stream, {"data": json.dumps({"order_id": 5})}, id=entry_id)
        raw.xadd(stream, CLOUDEVENT, id=entry_id)  # type: ignore[arg-type]
        raw.xadd(stream, {"x-from": "a-bad-producer", "data": b"\xff\x00 no"}, id=entry_id)
        last = await bus.publish("order.completed", {"n": 2})
        await _drain(bus)

        by_id = {e.id: e.data for e in seen}
        assert len(seen) == len(by_id) == 4  # each once (keyless: no order across them)
        assert by_id == {
            first.id: {"n": 1},
            "order.completed:0:1": {"order_id": 5},  # where it sits: stable
            "java-42": {"order_id": 7},
            last.id: {"n": 2},
        }
        await check_foreign(bus, seen)
    # Every entry is numbered densely now: afterward's offsets, other clients' entries too.
    assert [entry for entry, _ in _entries(raw, stream)] == [f"0-{n}".encode() for n in range(1, 6)]


async def test_groups_caught_up_read_entries_added_with_an_automatic_id(
    tmp_path: Path, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_bus_url(tmp_path)
    stream = _stream(url, "t")
    seen: dict[str, list[object]] = {"a": [], "b": []}
    async with EventBus(url) as bus:
        for group in seen:

            @bus.subscribe("t", group=group)
            async def handle(event: Event, group: str = group) -> None:
                seen[group].append(event.data)

        await bus.publish("t", 1)
        await _drain(bus)  # both Redis consumer groups exist, at the stream's end
        raw.xadd(stream, {"data": "2"})  # redis-py's default: an automatic ID
        raw.xadd(stream, {"data": "3"})
        # Counted where they sit (the end offset adopts them), not read as past the end.
        assert await bus.lag() == {"a": {"t": 2}, "b": {"t": 2}}
        with caplog.at_level("ERROR", logger="afterward.events"):
            await _drain(bus)
        assert "past the partition's end" not in caplog.text
        await bus.publish("t", 4)  # appending still works after them
        await _drain(bus)
        assert seen == {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}
        assert await bus.lag() == {"a": {"t": 0}, "b": {"t": 0}}
    assert [group["pending"] for group in raw.xinfo_groups(stream)] == [0, 0]


async def test_an_append_of_several_records_adopts_the_foreign_tail_first(
    tmp_path: Path, raw: redis.Redis
) -> None:
    url = redis_bus_url(tmp_path)
    async with RedisLog(url) as log:
        raw.xadd(_stream(url, "t"), {"data": "1"})
        records = [record("t", 2, id="e2"), record("u", 3, id="e3"), record("t", 4, id="e4")]
        await log.append(records)
        got = await log.read("t", {0: 0}, 10)
    assert [(e.offset, json.loads(e.value)) for e in got] == [(0, 1), (1, 2), (2, 4)]
    assert raw.xlen(_stream(url, "u")) == 1


async def test_afterward_entries_are_binary_cloudevents_for_redis_py(
    tmp_path: Path, raw: redis.Redis
) -> None:
    url = redis_bus_url(tmp_path)
    async with EventBus(url, source="shop") as bus:
        event = await publish_full(bus)
    [(entry_id, fields)] = _entries(raw, _stream(url, "order.completed"))
    found = {name.decode(): value.decode() for name, value in fields.items()}
    assert entry_id == b"0-1"
    assert json.loads(found.pop("data")) == DATA and found.pop("key") == "order-7"
    check_attributes(event, found)
