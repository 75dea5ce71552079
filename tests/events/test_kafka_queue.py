"""What only the Kafka work queue has: ready jobs are records of a queue topic whose
partitions the worker group shares, parked jobs stay off it until due, and the per-job
marks live in the state store. The shared guarantees are in test_queue_primitives.py
and test_work_queue.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from afterward.events.backends import open_backend
from afterward.events.backends.kafka import KafkaLog, KafkaQueue
from tests.events.distributed import kafka_bus_url, redis_bus_url

# The primitives' contract once more, collected here with this module's ``bus_url``: a
# Kafka bus whose state store (the job marks) is Redis, not SQLite.
from tests.events.test_queue_primitives import (  # noqa: F401
    job,
    parts,
    reserve_until,
    test_a_retry_due_now_comes_back_with_its_new_payload_and_next_attempt,
    test_ack_retry_fail_need_the_lease,
    test_an_expired_lease_is_redelivered_then_failed_at_its_last_try,
    test_competing_reservations_never_share_a_job,
    test_enqueue_is_idempotent_and_due_times_split_ready_from_delayed,
    test_extend_keeps_only_own_live_leases,
    test_failed_jobs_can_be_requeued_or_deleted,
    test_release_hands_back_at_once_without_counting,
    test_reserve_by_priority_then_due_then_order_counting_the_attempt,
)

# And the worker processes' tests (competing workers, a job that kills its worker,
# SIGTERM), with this module's ``shared_url``: workers sharing Kafka and a Redis store,
# as on several machines.
from tests.events.test_work_queue import (  # noqa: F401
    db,
    shared_bus,
    test_a_job_that_kills_its_worker_uses_its_tries_then_fails,
    test_sigterm_finishes_within_grace_and_hands_back_the_rest,
    test_worker_processes_compete_for_one_queue,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

TOPIC = "afterward.jobs.q"


def on_redis(tmp_path: Path, options: str = "") -> str:
    """A Kafka bus URL private to the test, its state store a Redis key prefix."""
    sqlite_store = kafka_bus_url(tmp_path).rsplit("&store=", 1)[0]
    return f"{sqlite_store}{options}&store={quote(redis_bus_url(tmp_path), safe='')}"


@pytest.fixture(params=["sqlite", "redis", "memory"])
def store(request: pytest.FixtureRequest) -> str:
    """The kind of state store the job marks are in."""
    return str(request.param)


def url_of(tmp_path: Path, store: str, options: str = "") -> str:
    """A Kafka bus URL private to the test, on a ``store`` state store."""
    if store == "redis":
        return on_redis(tmp_path, options)
    url = kafka_bus_url(tmp_path)
    if store == "memory":  # named: every backend of this test opened on it shares it
        url = f"{url.rsplit('&store=', 1)[0]}&store=memory://{tmp_path.name}"
    return url + options


@pytest.fixture
def bus_url(tmp_path: Path) -> str:
    """For the primitives imported above."""
    return on_redis(tmp_path)


@pytest.fixture
def shared_url(tmp_path: Path) -> str:
    """For the worker processes' tests imported above."""
    return on_redis(tmp_path)


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[tuple[KafkaQueue, KafkaLog]]:
    """The work queue and the log of a connected backend on ``url`` (one worker process)."""
    backend = open_backend(url)
    assert isinstance(backend.queue, KafkaQueue) and isinstance(backend.log, KafkaLog)
    async with backend:
        yield backend.queue, backend.log


async def test_parked_jobs_stay_off_the_topic_until_due(tmp_path: Path, store: str) -> None:
    url = url_of(tmp_path, store, "&queue_partitions=4")
    async with opened(url) as (queue, log):
        now = time.time()
        later = [job(f"later-{n}", due=now + 3600) for n in range(20)]
        await queue.enqueue([*later, job("soon", due=now + 0.3), job("now")])
        ends = await log.end_offsets(TOPIC)
        assert (len(ends), sum(ends.values())) == (4, 1)  # queue_partitions; one record
        (first,) = await queue.reserve("q", "w", 1, 30)
        assert first.job.id == "now"
        (soon,) = await reserve_until(queue, "w", 1)  # published once due, then reserved
        assert soon.job.id == "soon" and time.time() >= now + 0.3
        assert sum((await log.end_offsets(TOPIC)).values()) == 2
        depth = (await queue.depth("q"))["q"]
        assert (depth.ready, depth.delayed, depth.running) == (0, 20, 2)


async def test_a_retry_with_backoff_is_parked_then_published_again(
    tmp_path: Path, store: str
) -> None:
    async with opened(url_of(tmp_path, store)) as (queue, log):
        await queue.enqueue([job("a")])
        (first,) = await queue.reserve("q", "w", 1, 30)
        assert first.attempt == 1
        assert await queue.retry("q", "w", "a", time.time() + 0.3, b'{"attempt": 2}')
        assert await queue.reserve("q", "w", 1, 30) == []  # parked: not due
        (second,) = await reserve_until(queue, "w", 1)
        assert (second.attempt, second.job.payload) == (2, b'{"attempt": 2}')
        assert sum((await log.end_offsets(TOPIC)).values()) == 2  # published again when due


async def test_priority_spans_the_partitions_a_worker_holds(tmp_path: Path, store: str) -> None:
    url = url_of(tmp_path, store, "&queue_partitions=4")
    async with opened(url) as (queue, log):
        await queue.enqueue([job(f"plain-{n}") for n in range(12)])
        await queue.enqueue([job("urgent", priority=5), job("low", priority=-1)])
        assert len(await log.end_offsets(TOPIC)) == 4
        got = [r.job.id for r in await queue.reserve("q", "w", 14, 30)]
        assert (got[0], got[1:13], got[-1]) == ("urgent", [f"plain-{n}" for n in range(12)], "low")


async def _committed(url: str, group: str) -> int | None:
    """The Kafka group's committed offset of partition 0 of the queue topic."""
    query = parse_qs(urlsplit(url).query)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=urlsplit(url).netloc,
        group_id=query["prefix"][0] + group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(query["prefix"][0] + TOPIC, 0))
        return offset
    finally:
        await consumer.stop()


async def test_the_next_member_repeats_only_the_unfinished_jobs(tmp_path: Path, store: str) -> None:
    url = url_of(tmp_path, store, "&queue_partitions=1")
    ids = [f"j{n}" for n in range(10)]
    finished = {"j0", "j1", "j2", "j4", "j7"}
    async with opened(url) as (first, _):
        await first.enqueue([job(i) for i in ids])
        held = await first.reserve("q", "w1", 10, 0.5)
        assert [r.job.id for r in held] == ids
        for job_id in sorted(finished):
            assert await first.ack("q", "w1", job_id)
    # Leaving the group committed the first unfinished record: the next member starts
    # there, and the ledger skips the jobs done after it.
    assert await _committed(url, "afterward.worker.q") == 3
    async with opened(url) as (second, _):
        again = await reserve_until(second, "w2", 5)  # once the first's leases ran out
        assert sorted(r.job.id for r in again) == sorted(set(ids) - finished)
        assert {r.attempt for r in again} == {2}
        assert await second.reserve("q", "w2", 10, 30) == []
