"""The work queue's primitives (WorkQueue, FailedJobStore), on every backend that has them.

Called directly, without a worker: the contract of afterward.events._protocols.WorkQueue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from afterward.events._records import QueuedJob, Reservation, StoredFailedJob
from afterward.events._work_queue import FailedJobStore, WorkQueue
from afterward.events.backends import open_backend


@pytest.fixture
async def parts(bus_url: str) -> AsyncIterator[tuple[WorkQueue, FailedJobStore]]:
    backend = open_backend(bus_url)
    if backend.queue is None or backend.failed is None:
        pytest.fail(f"{backend.scheme} has no work queue")  # every backend must have one
    await backend.connect()
    try:
        yield backend.queue, backend.failed
    finally:
        await backend.aclose()


def job(
    id: str, *, due: float | None = None, priority: int = 0, tries: int = 3, q: str = "q"
) -> QueuedJob:
    """A job due now (or at ``due``)."""
    when = time.time() if due is None else due
    return QueuedJob(id, q, f'{{"id": "{id}"}}'.encode(), when, priority, tries, "cid")


async def reserve_until(
    queue: WorkQueue, worker: str, count: int, lease: float = 30, timeout: float = 5
) -> list[Reservation]:
    """Reserve until ``count`` jobs came (a lease has to run out first), or fail."""
    got: list[Reservation] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        got += await queue.reserve("q", worker, count - len(got), lease)
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(got)} of {count} jobs came back")
        await asyncio.sleep(0.02)
    return got


async def test_enqueue_is_idempotent_and_due_times_split_ready_from_delayed(
    parts: tuple[WorkQueue, FailedJobStore],
) -> None:
    queue, _ = parts
    await queue.enqueue([job("a"), job("b", due=time.time() + 3600)])
    await queue.enqueue([job("a")])
    depth = (await queue.depth("q"))["q"]
    assert (depth.ready, depth.delayed, depth.running, depth.failed) == (1, 1, 0, 0)
    assert await queue.depth("nothing-here") == {}


async def test_reserve_by_priority_then_due_then_order_counting_the_attempt(
    parts: tuple[WorkQueue, FailedJobStore],
) -> None:
    queue, _ = parts
    now = time.time()
    await queue.enqueue(
        [
            job("late", due=now + 3600, priority=9),
            job("first"),
            job("second"),
            job("urgent", priority=5),
            job("older", due=now - 10),
        ]
    )
    got = await queue.reserve("q", "w1", 3, 30)
    assert [r.job.id for r in got] == ["urgent", "older", "first"]
    assert {r.attempt for r in got} == {1}
    assert [r.job.id for r in await queue.reserve("q", "w2", 10, 30)] == ["second"]
    depth = (await queue.depth("q"))["q"]
    assert (depth.running, depth.delayed, depth.workers) == (4, 1, {"w1": 3, "w2": 1})


async def test_competing_reservations_never_share_a_job(
    parts: tuple[WorkQueue, FailedJobStore],
) -> None:
    queue, _ = parts
    await queue.enqueue([job(f"j{n}") for n in range(60)])
    batches = await asyncio.gather(*(queue.reserve("q", f"w{n}", 7, 30) for n in range(10)))
    ids = [r.job.id for batch in batches for r in batch]
    assert sorted(ids) == sorted(f"j{n}" for n in range(60))


async def test_ack_retry_fail_need_the_lease(parts: tuple[WorkQueue, FailedJobStore]) -> None:
    queue, _ = parts
    await queue.enqueue([job("a"), job("b"), job("c")])
    held = {r.job.id: r for r in await queue.reserve("q", "w1", 3, 30)}
    assert not await queue.ack("q", "w2", "a")  # another worker's job
    assert await queue.ack("q", "w1", "a")
    assert not await queue.ack("q", "w1", "a")  # gone
    later = time.time() + 3600
    assert await queue.retry("q", "w1", "b", later, b'{"attempt": 2}')
    record = StoredFailedJob(held["c"].job, 1, "ValueError: no", "tb", datetime.now(UTC))
    assert await queue.fail("q", "w1", record)
    depth = (await queue.depth("q"))["q"]
    assert (depth.ready, depth.delayed, depth.running, depth.failed) == (0, 1, 0, 1)
    assert await queue.reserve("q", "w1", 10, 30) == []  # b is not due: nothing to run


async def test_a_retry_due_now_comes_back_with_its_new_payload_and_next_attempt(
    parts: tuple[WorkQueue, FailedJobStore],
) -> None:
    queue, _ = parts
    await queue.enqueue([job("a")])
    (first,) = await queue.reserve("q", "w1", 1, 30)
    assert await queue.retry("q", "w1", "a", time.time() + 0.2, b'{"attempt": 2}')
    (second,) = await reserve_until(queue, "w2", 1)
    assert (second.attempt, second.job.payload) == (2, b'{"attempt": 2}')
    assert first.attempt == 1


async def test_extend_keeps_only_own_live_leases(parts: tuple[WorkQueue, FailedJobStore]) -> None:
    queue, _ = parts
    await queue.enqueue([job("a"), job("b")])
    await queue.reserve("q", "w1", 1, 30)
    await queue.reserve("q", "w2", 1, 30)
    assert await queue.extend("q", "w1", ["a", "b"], 30) == {"a"}


async def test_an_expired_lease_is_redelivered_then_failed_at_its_last_try(
    parts: tuple[WorkQueue, FailedJobStore],
) -> None:
    queue, failed = parts
    await queue.enqueue([job("a", tries=2)])
    (one,) = await queue.reserve("q", "dead-1", 1, 0.2)  # this worker dies: no renewal
    (two,) = await reserve_until(queue, "dead-2", 1, lease=0.2)
    assert (one.attempt, two.attempt) == (1, 2)
    deadline = time.monotonic() + 5
    while not await failed.failed_jobs("q"):
        assert await queue.reserve("q", "w3", 1, 30) == []  # never a third delivery
        assert time.monotonic() < deadline, "the job whose worker died was never failed"
        await asyncio.sleep(0.05)
    (gave_up,) = await failed.failed_jobs("q")
    assert gave_up.job.id == "a" and gave_up.attempts == 2
    assert gave_up.error.startswith("WorkerDied: the worker running attempt 2 of 2")


async def test_release_hands_back_at_once_without_counting(
    parts: tuple[WorkQueue, FailedJobStore],
) -> None:
    queue, _ = parts
    await queue.enqueue([job("a")])
    await queue.reserve("q", "w1", 1, 30)
    await queue.release("q", "w1", ["a"])
    (again,) = await queue.reserve("q", "w2", 1, 30)
    assert again.attempt == 1


async def test_failed_jobs_can_be_requeued_or_deleted(
    parts: tuple[WorkQueue, FailedJobStore],
) -> None:
    queue, failed = parts
    await queue.enqueue([job("a"), job("b")])
    for r in await queue.reserve("q", "w1", 2, 30):
        assert await queue.fail(
            "q", "w1", StoredFailedJob(r.job, 3, "E: x", "tb", datetime.now(UTC))
        )
    assert [f.job.id for f in await failed.failed_jobs("q")] == ["a", "b"]
    assert await failed.failed_jobs("other") == []
    found = await failed.failed_job("a")
    assert found is not None and (found.error, found.traceback, found.attempts) == ("E: x", "tb", 3)
    assert await failed.requeue_failed_job("a", job("a"))
    assert not await failed.requeue_failed_job("a", job("a"))  # no longer failed
    (again,) = await queue.reserve("q", "w1", 5, 30)
    assert (again.job.id, again.attempt) == ("a", 1)
    assert await failed.delete_failed_job("b")
    assert not await failed.delete_failed_job("b")
    assert await failed.failed_job("b") is None
