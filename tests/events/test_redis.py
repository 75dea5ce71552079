"""What only the Redis backend has: the key prefix, the stream layout and its consumer
groups (XREADGROUP, XACK, XAUTOCLAIM). The shared guarantees are in
test_conformance.py, faults (a consumer process killed) in test_faults_redis.py."""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import afterward
from afterward import BackendUnavailable, ConfigError
from afterward.events import Event, EventBus
from afterward.events._protocols import GroupLog
from afterward.events._records import Done
from afterward.events.backends.redis import RedisLog, _scripts
from tests.events.backends import record
from tests.events.distributed import redis_bus_url
from tests.support import require_service

pytestmark = pytest.mark.redis


def _prefix(url: str) -> str:
    return url.split("prefix=", 1)[1].split("&", 1)[0]


@contextlib.asynccontextmanager
async def _registered(
    tmp_path: Path, events: int
) -> AsyncIterator[tuple[EventBus, RedisLog, list[Event]]]:
    """A bus and a log on a fresh prefix, ``events`` events published to ``t`` (key
    ``k``), and group ``g`` registered there (members then join it on the log)."""
    url = redis_bus_url(tmp_path)
    async with EventBus(url) as bus, RedisLog(url) as log:
        published = [await bus.publish("t", n, key="k") for n in range(events)]
        await log.register("g", "t", {})
        yield bus, log, published


async def test_everything_lives_under_the_prefix_as_streams(tmp_path: Path, raw: Redis) -> None:
    url = redis_bus_url(tmp_path)
    prefix = _prefix(url)
    async with EventBus(url) as bus:

        @bus.subscribe("orders", group="billing")
        async def handle(event: Event) -> None:
            return None

        await bus.publish("orders", {"n": 1}, key="k")
        await bus.drain()
    keys = sorted(k.decode() for k in await raw.keys(prefix + "*"))
    names = ["batches:orders:billing", "done-log:orders:billing", "done:billing", "groups"]
    names.append("pos:orders:billing")
    names.append("stream:orders")
    assert keys == [prefix + name for name in names]
    assert await raw.type(f"{prefix}stream:orders") == b"stream"
    [(entry_id, fields)] = await raw.xrange(f"{prefix}stream:orders")
    assert entry_id == b"0-1"  # CloudEvents attributes as fields, the value in "data"
    assert set(fields) == {
        b"ce_specversion",
        b"ce_id",
        b"ce_type",
        b"ce_source",
        b"ce_time",
        b"content-type",
        b"ce_correlationid",
        b"key",
        b"data",
    }
    assert fields[b"data"] == b'{"n":1}' and fields[b"key"] == b"k"


async def test_a_group_is_a_stream_consumer_group_with_every_entry_acked(
    tmp_path: Path, raw: Redis
) -> None:
    url = redis_bus_url(tmp_path)
    stream = f"{_prefix(url)}stream:t"
    async with EventBus(url, batch_size=2) as bus:
        assert isinstance(bus._core.backend.log, GroupLog)

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            return None

        for n in range(5):
            await bus.publish("t", n, key="k")
        await bus.drain()
        [info] = await raw.xinfo_groups(stream)
        assert (info["name"], info["last-delivered-id"], info["pending"]) == (b"g", b"0-5", 0)
        assert info["consumers"] == 0  # the member left: nothing pending, so deleted
        assert (await raw.xpending(stream, "g"))["pending"] == 0
        assert await bus._core.backend.state.positions("g", "t") == {0: 5}
        assert not await raw.exists(f"{_prefix(url)}claim:t:g")  # released on close


async def test_a_dead_consumers_pending_entries_are_taken_over_exactly_once(
    tmp_path: Path, raw: Redis
) -> None:
    url = redis_bus_url(tmp_path)
    stream = f"{_prefix(url)}stream:t"
    seen: list[int] = []
    async with EventBus(url) as bus:

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data)

        for n in range(3):
            await bus.publish("t", n, key="k")
        await bus.drain()
        events = [await bus.publish("t", n, key="k") for n in range(3, 8)]
        # Another consumer read 3 and 4 and died without acknowledging them; 3's ID is
        # recorded as processed already (say, a dead-letter retry ran it meanwhile).
        reply = await raw.xreadgroup("g", "dead", {stream: ">"}, count=2)
        assert [entry_id for entry_id, _ in reply[0][1]] == [b"0-4", b"0-5"]
        await bus._core.backend.state.commit("g", "t", {}, [Done(events[0].id, "k")])
        assert (await raw.xpending(stream, "g"))["pending"] == 2
        before = afterward.stats().get("events.duplicate", 0)
        await bus.drain()
        assert seen == [0, 1, 2, 4, 5, 6, 7]  # 4 taken over, in order, before the new ones
        assert afterward.stats()["events.duplicate"] == before + 1  # 3: skipped
        assert (await raw.xpending(stream, "g"))["pending"] == 0
        assert await raw.xinfo_consumers(stream, "g") == []  # the dead one is gone too
        assert (await bus.lag())["g"]["t"] == 0


async def test_a_standby_member_takes_over_when_the_holders_claim_expires(
    tmp_path: Path, raw: Redis
) -> None:
    async with _registered(tmp_path, 5) as (_, log, events):
        stream = f"{log.prefix}stream:t"
        first = await log.join("g", "t", 30.0)
        second = await log.join("g", "t", 30.0)
        batch = await first.fetch(2, 0.05)
        assert [e.offset for e in batch] == [0, 1]

        started = time.monotonic()
        assert await second.fetch(10, 0.05) == []  # stands by while first holds the claim
        assert time.monotonic() - started >= 0.05  # after waiting, not in a hot loop

        # first's process freezes: its claim expires (deleted here, as the TTL would)
        await raw.delete(f"{log.prefix}claim:t:g")
        taken = await second.fetch(10, 0.05)
        assert [e.offset for e in taken] == [0, 1]  # first's batch, again, first
        await second.commit({0: 2}, [Done(events[0].id), Done(events[1].id)])
        rest = await second.fetch(10, 0.05)
        assert [e.offset for e in rest] == [2, 3, 4]
        await second.commit({0: 5}, [Done(e.id) for e in events[2:]])

        # first wakes up and commits its old batch: the position does not go back
        await first.commit({0: 2}, [Done(events[0].id), Done(events[1].id)])
        assert await log.positions("g", "t") == {0: 5}
        assert (await raw.xpending(stream, "g"))["pending"] == 0
        await first.close()
        await second.close()
        await second.close()  # idempotent
        assert await raw.xinfo_consumers(stream, "g") == []
        assert not await raw.exists(f"{log.prefix}claim:t:g")


async def test_replay_moves_the_consumer_group_and_drops_the_batch_in_flight(
    tmp_path: Path, raw: Redis
) -> None:
    async with _registered(tmp_path, 4) as (bus, log, events):
        stream = f"{log.prefix}stream:t"
        member = await log.join("g", "t", 30.0)
        assert [e.offset for e in await member.fetch(3, 0.05)] == [0, 1, 2]
        await bus.replay("t", group="g", from_offset=1)  # while that batch is in flight
        [info] = await raw.xinfo_groups(stream)
        assert (info["last-delivered-id"], info["pending"]) == (b"0-1", 0)
        await member.commit({0: 3}, [Done(e.id) for e in events[:3]])
        assert await log.positions("g", "t") == {0: 1}  # the replay stands
        assert (await bus.lag())["g"]["t"] == 3
        assert [e.offset for e in await member.fetch(10, 0.05)] == [1, 2, 3]
        await member.commit({0: 4}, [Done(events[3].id)])
        assert (await bus.lag())["g"]["t"] == 0
        await member.close()


async def test_an_append_across_topics_numbers_each_stream_densely(tmp_path: Path) -> None:
    async with RedisLog(redis_bus_url(tmp_path)) as log:
        assert await log.end_offsets("a") == {}
        await log.append([record("a", 1, id="e1")])
        await log.append([record(t, n, id=f"e{n}") for n, t in enumerate("aba", 2)])
        assert await log.end_offsets("a") == {0: 3}
        assert await log.end_offsets("b") == {0: 1}
        assert [(e.offset, e.value) for e in await log.read("a", {0: 1}, 10)] == [
            (1, b"2"),
            (2, b"4"),
        ]


def test_redis_py_options_pass_through_the_url() -> None:
    log = RedisLog("redis://127.0.0.1:6379/0?prefix=p:&socket_timeout=3")
    assert log.prefix == "p:"
    redis_url = log._clients.url
    assert "prefix" not in redis_url and "socket_timeout=3" in redis_url


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        EventBus("redis://127.0.0.1:notaport/0")


async def test_a_member_whose_claim_lapsed_takes_over_again_when_it_gets_it_back(
    tmp_path: Path, raw: Redis
) -> None:
    """A stalls, its claim lapses, B takes A's batch over and stops without committing;
    when A gets the claim back it must take B's pending batch over, not skip it."""
    async with _registered(tmp_path, 5) as (_, log, _events):
        first = await log.join("g", "t", 30.0)
        second = await log.join("g", "t", 30.0)
        assert [e.offset for e in await first.fetch(2, 0.05)] == [0, 1]
        # first's process stalls past its claim's TTL: Redis expires the claim, and
        # first has not renewed it since (what the heartbeat would have done)
        await raw.delete(f"{log.prefix}claim:t:g")
        first._lease._until = 0.0  # type: ignore[attr-defined]
        assert [e.offset for e in await second.fetch(2, 0.05)] == [0, 1]
        await second.close()  # gone without committing: 0 and 1 stay pending
        again = await first.fetch(10, 0.05)
        assert [e.offset for e in again] == [0, 1]  # taken over again, in order
        await first.close()


async def test_a_script_the_server_does_not_know_is_sent_once_with_eval(raw: Redis) -> None:
    """A restarted server has lost its script cache: EVALSHA fails, EVAL sends the
    source and caches it, and the next run goes by SHA again."""
    require_service("redis", 6379)
    source = f"return '{uuid.uuid4().hex}'"  # never sent before: not in the cache
    sha = hashlib.sha1(source.encode()).hexdigest()
    script = _scripts.Script("probe", source, sha)
    assert await raw.script_exists(sha) == [False]
    assert await _scripts.run(raw, script, [], []) == source[8:-1].encode()
    assert await raw.script_exists(sha) == [True]
    assert await _scripts.run(raw, script, [], []) == source[8:-1].encode()


async def test_a_failed_takeover_is_tried_again_by_the_next_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim is held once the takeover script fails: the next fetch must still take
    the pending entries over before reading new ones."""
    async with _registered(tmp_path, 5) as (_, log, _events):
        first = await log.join("g", "t", 30.0)
        assert [e.offset for e in await first.fetch(2, 0.05)] == [0, 1]
        await first.close()  # without committing: 0 and 1 stay pending
        second = await log.join("g", "t", 30.0)
        take_over = second._take_over  # type: ignore[attr-defined]

        async def fails_once() -> None:
            monkeypatch.setattr(second, "_take_over", take_over)
            raise BackendUnavailable("Redis bus down", backend="redis")

        monkeypatch.setattr(second, "_take_over", fails_once)
        with pytest.raises(BackendUnavailable):
            await second.fetch(10, 0.05)
        assert [e.offset for e in await second.fetch(10, 0.05)] == [0, 1]
        await second.close()
