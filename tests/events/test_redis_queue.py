"""What only the Redis work queue has: its keys under the bus prefix, reservations that
do bounded work whatever is delayed, the rank encoding, the scripts' EVAL fallback.
The shared guarantees are in test_queue_primitives.py and test_work_queue.py."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from afterward.events._records import QueuedJob, StoredFailedJob, worker_died
from afterward.events.backends import open_backend
from afterward.events.backends.redis import RedisQueue, _scripts
from afterward.events.backends.redis import _queue_codec as codec
from afterward.events.backends.redis._queue import BATCH
from tests.events.distributed import REDIS, redis_bus_url

# -- the encodings (no server) ---------------------------------------------------------


def test_priority_keys_sort_as_priorities_descending_for_any_int() -> None:
    rng = random.Random(7)
    values = [0, 1, -1, 15, 16, -16, 2**53, 2**53 + 1, -(2**53) - 1, 10**400, -(10**400)]
    values += [rng.randint(-(2**70), 2**70) for _ in range(300)]
    values += [rng.randint(-300, 300) for _ in range(100)]
    by_key = sorted(set(values), key=codec.priority_key)
    assert by_key == sorted(set(values), reverse=True)
    # Followed by more of a rank, a key still decides first: none is a prefix of another.
    keys = {codec.priority_key(v) for v in values}
    assert not any(a != b and b.startswith(a) for a in keys for b in keys)


def test_due_keys_sort_as_due_times() -> None:
    rng = random.Random(3)
    values = [0.0, -0.0, 5e-324, -5e-324, 1.0, -1.0, 1e300, -1e300, time.time()]
    values += [rng.uniform(-1e10, 1e10) for _ in range(300)]
    assert sorted(values, key=codec.due_key) == sorted(values)  # -0.0 before 0.0: fine
    assert all(len(codec.due_key(v)) == 16 for v in values)


def test_the_worker_died_error_is_formatted_like_worker_died() -> None:
    assert codec.DIED % (2, 3) == worker_died(2, 3)


# -- on the server ---------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    return redis_bus_url(tmp_path)


@pytest.fixture
async def raw(url: str) -> AsyncIterator[Redis]:
    """A redis-py client of its own, to look at the keys."""
    async with Redis.from_url(REDIS) as client:
        yield client


@pytest.fixture
async def queue(url: str) -> AsyncIterator[RedisQueue]:
    backend = open_backend(url)
    assert isinstance(backend.queue, RedisQueue)
    async with backend:
        yield backend.queue


def _prefix(url: str) -> str:
    return url.split("prefix=", 1)[1].split("&", 1)[0]


async def _scan(raw: Redis, match: str) -> list[str]:
    return sorted([key.decode() async for key in raw.scan_iter(match=match, count=1000)])


def job(
    id: str, q: str = "q", *, due: float | None = None, priority: int = 0, tries: int = 2
) -> QueuedJob:
    when = time.time() if due is None else due
    return QueuedJob(id, q, f'{{"id": "{id}"}}'.encode(), when, priority, tries, None)


@pytest.mark.redis
async def test_every_key_lives_under_the_bus_prefix(url: str, raw: Redis) -> None:
    token = uuid.uuid4().hex  # in every queue name and job ID, and in the prefix
    prefix, q = _prefix(url), f"q-{token}"
    backend = open_backend(url)
    async with backend:
        queue, failed = backend.queue, backend.failed
        assert queue is not None and failed is not None
        hour = time.time() + 3600
        await queue.enqueue([job(f"{n}-{token}", q) for n in range(4)])
        await queue.enqueue([job(f"later-{token}", q, due=hour)])
        a, b, c, d = await queue.reserve(q, "w1", 4, 30)
        assert await queue.ack(q, "w1", a.job.id)
        assert await queue.retry(q, "w1", b.job.id, hour, b"{}")
        record = StoredFailedJob(c.job, 1, "E: x", "tb", datetime.now(UTC))
        assert await queue.fail(q, "w1", record)
        found = await _scan(raw, f"*{token}*")
        assert found and all(key.startswith(prefix) for key in found)
        mine = await _scan(raw, f"{prefix}*")
        names = [key.removeprefix(prefix) for key in mine]
        jobs = [*(f"job:{r.job.id}" for r in (b, c, d)), f"job:later-{token}"]
        parts = [f"jobs:{q}:{part}" for part in ("delayed", "failed", "running")]
        assert names == sorted([*jobs, *parts, "jobs:queues", "jobs:seq"])
        # Sets left empty vanish (running, failed): nothing is left behind.
        assert await queue.ack(q, "w1", d.job.id)
        assert await failed.delete_failed_job(c.job.id)
        left = await _scan(raw, f"{prefix}*")
        jobs = [f"job:{b.job.id}", f"job:later-{token}"]
        assert left == sorted(prefix + n for n in [*jobs, f"jobs:{q}:delayed", *names[-2:]])


@pytest.mark.redis
async def test_delayed_jobs_cost_a_reservation_nothing(queue: RedisQueue) -> None:
    hour = time.time() + 3600
    for start in range(0, 10_000, 2_000):
        await queue.enqueue([job(f"later-{n}", due=hour) for n in range(start, start + 2_000)])
    await queue.enqueue([job("now-1"), job("now-2")])
    made_due, expired, taken = await queue.reserve_counting("q", "w", 5, 30)
    # The delayed set is ordered by due time: no job due later is even looked at.
    assert (made_due, expired, [r.job.id for r in taken]) == (0, 0, ["now-1", "now-2"])
    depth = (await queue.depth("q"))["q"]
    assert (depth.ready, depth.delayed, depth.running) == (0, 10_000, 2)


@pytest.mark.redis
async def test_a_reservation_makes_at_most_a_batch_of_jobs_due(queue: RedisQueue) -> None:
    soon = time.time() + 0.3
    count = BATCH + BATCH // 2
    await queue.enqueue([job(f"j{n}", due=soon + n * 1e-6) for n in range(count)])
    deadline = time.monotonic() + 10
    while (await queue.depth("q"))["q"].ready < count:  # every one due (the server says)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    made_due, _, (first,) = await queue.reserve_counting("q", "w", 1, 30)
    assert (made_due, first.job.id) == (BATCH, "j0")  # the earliest due first
    made_due, _, (second,) = await queue.reserve_counting("q", "w", 1, 30)
    assert (made_due, second.job.id) == (count - BATCH, "j1")
    assert (await queue.depth("q"))["q"].ready == count - 2


@pytest.mark.redis
async def test_expired_leases_are_handled_a_batch_at_a_time(queue: RedisQueue) -> None:
    count = BATCH + 10
    for start in range(0, count, 500):
        await queue.enqueue([job(f"j{n}") for n in range(start, min(count, start + 500))])
    assert len(await queue.reserve("q", "dead", count, 0.2)) == count
    await asyncio.sleep(0.3)  # every lease runs out
    _, expired, taken = await queue.reserve_counting("q", "w", 1, 30)
    assert (expired, len(taken)) == (BATCH, 1)
    _, expired, _ = await queue.reserve_counting("q", "w", 0, 30)
    assert expired == 10


@pytest.mark.redis
async def test_priorities_past_a_doubles_precision_keep_their_order(queue: RedisQueue) -> None:
    big = 2**60  # big and big + 1 are the same double: a score could not tell them apart
    await queue.enqueue(
        [job("low", priority=big - 1), job("lower", priority=-big), job("top", priority=big + 1)]
    )
    await queue.enqueue([job("mid", priority=big)])
    taken = await queue.reserve("q", "w", 4, 30)
    assert [r.job.id for r in taken] == ["top", "mid", "low", "lower"]
    assert [r.job.priority for r in taken] == [big + 1, big, big - 1, -big]


@pytest.mark.redis
async def test_a_job_reads_back_as_it_was_enqueued(queue: RedisQueue) -> None:
    sent = [
        QueuedJob("a", "q", b"\x00\xff binary", math.pi, 3, 5, "cid-1"),
        QueuedJob("b", "q", b"{}", math.e, 0, 1, None),
        QueuedJob("c", "q", b"{}", 1.0, 0, 1, ""),
    ]
    await queue.enqueue(sent)
    taken = sorted(await queue.reserve("q", "w", 3, 30), key=lambda r: r.job.id)
    assert [r.job for r in taken] == sent
    record = StoredFailedJob(sent[0], 1, "E: é", "tb", datetime(2030, 1, 2, 3, 4, 5, 6, UTC))
    assert await queue.fail("q", "w", record)
    assert await queue.failed_job("a") == record
    assert await queue.failed_jobs(None) == [record]


@pytest.mark.redis
async def test_queue_scripts_fall_back_to_eval_on_a_server_without_them(
    queue: RedisQueue, raw: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted server knows no script: each queue script must go through
    ``_scripts.run`` (EVALSHA, then EVAL). Scripts with a fresh comment stand in for
    a flushed cache (SCRIPT FLUSH would touch every user of the shared server)."""
    fresh: dict[str, str] = {}
    for name, script in _scripts.SCRIPTS.items():
        if name.startswith("queue_"):
            source = f"-- {uuid.uuid4().hex}\n{script.source}"
            new = _scripts.Script(name, source, hashlib.sha1(source.encode()).hexdigest())
            monkeypatch.setattr(_scripts, name.upper(), new)
            fresh[name] = new.sha
    assert await raw.script_exists(*fresh.values()) == [False] * len(fresh)
    await queue.enqueue([job("a"), job("b"), job("c", tries=1)])
    a, b, c = await queue.reserve("q", "w", 3, 30)
    assert await queue.extend("q", "w", [a.job.id], 30) == {"a"}
    assert await queue.retry("q", "w", a.job.id, 0.0, b"{}")
    await queue.release("q", "w", [b.job.id])
    assert await queue.ack("q", "w", c.job.id)
    (again, _) = await queue.reserve("q", "w", 2, 30)
    record = StoredFailedJob(again.job, 1, "E: x", "tb", datetime.now(UTC))
    assert await queue.fail("q", "w", record)
    assert set(await queue.depth(None)) == {"q"}
    assert await queue.requeue_failed_job(again.job.id, again.job)
    assert not await queue.delete_failed_job("nope")
    # The job ledger's scripts (a Kafka bus's job marks).
    assert await queue.due_delayed("q", 10) == []
    await queue.mark_ready("q", ["nope"])
    taken, settled = await queue.claim("q", "w", [again.job.id, "nope"], 5, 30)
    assert ([r.job.id for r in taken], settled) == ([again.job.id], {"nope"})
    assert await raw.script_exists(*fresh.values()) == [True] * len(fresh)
