"""Retention on Redis, at the level of its keys: streams trimmed in batches from the
oldest (the newest kept, offsets going on), processed IDs and key versions pruned by
the commit log that commits append to and replays drop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from afterward.events._records import Done, Pruned
from afterward.events.backends.redis import RedisLog
from tests.events.backends import record
from tests.events.distributed import redis_bus_url

pytestmark = pytest.mark.redis


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[RedisLog]:
    async with RedisLog(redis_bus_url(tmp_path)) as connected:
        yield connected


async def _append_old_then_new(log: RedisLog, old: int, new: int) -> None:
    long_ago = time.time() - 7200
    await log.append([record("t", n, id=f"old-{n}", at=long_ago + n) for n in range(old)])
    await log.append([record("t", n, id=f"new-{n}") for n in range(new)])


async def test_streams_are_trimmed_in_batches_and_offsets_go_on(log: RedisLog, raw: Redis) -> None:
    await _append_old_then_new(log, old=25, new=2)
    stream = log.prefix + "stream:t"
    before = time.time() - 3600
    assert await log.prune("t", before, 10) == 10  # one batch: the 10 oldest
    assert await log.first_offsets("t") == {0: 10}
    assert await log.prune("t", before, 10) == 10
    assert await log.prune("t", before, 10) == 5  # the old ones are gone: a short batch
    assert await log.prune("t", before, 10) == 0
    assert await raw.xlen(stream) == 2
    assert await log.end_offsets("t") == {0: 27}  # not XLEN: offsets go on
    assert [e.offset for e in await log.read("t", {}, 10)] == [25, 26]
    at = await log.offsets_for_time("t", datetime.now(UTC))
    assert at == {0: 27}
    assert await log.prune("t", time.time() + 60, 100) == 1  # everything is old: not the newest
    await log.append([record("t", "next", id="next")])
    assert [e.offset for e in await log.read("t", {}, 10)] == [26, 27]
    storage = (await log.storage())["t"]
    assert storage.events == 2 and storage.bytes > 0 and storage.oldest is not None
    assert await log.topics() == ["t"]
    assert await log.prune("missing", time.time(), 10) == 0
    assert await log.end_offsets("missing") == {}


async def test_state_is_pruned_by_when_it_was_committed(log: RedisLog, raw: Redis) -> None:
    await log.register("g", "t", {})
    await log.register("g", "u", {})
    done = [Done(f"e{n}", key=f"k{n % 2}", version=n + 1) for n in range(4)]
    await log.commit("g", "t", {0: 4}, done)
    await log.commit("g", "u", {0: 1}, [Done("dead", processed=False), Done("u1", "k", 1)])
    await log.count_attempt("g", "t", "e0")
    # Nothing is old enough yet.
    assert await log.prune_state(time.time() - 60, 1000) == Pruned()
    await asyncio.sleep(0.05)
    recent = time.time()
    await asyncio.sleep(0.05)  # the commit log carries the server's clock
    await log.commit("g", "t", {0: 5}, [Done("e4", key="k0", version=9)])
    # Whole commits: t's first one (4 IDs; k1's version, not k0's, raised since), then u's.
    assert await log.prune_state(recent, 3) == Pruned(processed=4, versions=1)
    assert await log.prune_state(recent, 3) == Pruned(processed=1, versions=1)
    assert await log.prune_state(recent, 3) == Pruned()
    assert await log.processed("g", ["e0", "e1", "e2", "e3", "u1", "e4"]) == {"e4"}
    assert await log.key_versions("g", "t", ["k0", "k1"]) == {"k0": 9}
    assert await log.key_versions("g", "u", ["k"]) == {}
    assert not await raw.hexists(log.prefix + "deliveries:g", "e0")
    assert await raw.llen(log.prefix + "done-log:t:g") == 1
    assert not await raw.exists(log.prefix + "done-log:u:g")


async def test_a_replay_that_forgets_drops_the_commit_log_too(log: RedisLog, raw: Redis) -> None:
    await log.register("g", "t", {})
    await log.commit("g", "t", {0: 2}, [Done("a", "k", 1), Done("b", "k", 2)])
    await log.commit("g", "u", {0: 1}, [Done("c")])
    await log.rewind("g", "t", {0: 0}, forget=True)
    assert not await raw.exists(log.prefix + "done-log:t:g")
    assert await raw.llen(log.prefix + "done-log:u:g") == 1
    assert await log.processed("g", ["a", "b", "c"]) == {"c"}
