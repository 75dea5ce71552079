"""The queue connection as a work queue (API.md section 4), on every backend that has one.

Worker processes are real ``afterward worker`` subprocesses on a shared backend (SQLite
file, Redis, Kafka); the in-process tests run on memory too.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from afterward import DispatchError
from afterward.events import EventBus
from afterward.jobs import unregister_connection
from tests.events.backends import BACKENDS, BackendFactory
from tests.events.jobs_app import attempt_until_file, exit_now, nap, record
from tests.events.procs import spawn
from tests.support import wait_for

#: Backends other processes can reach: every one but memory.
SHARED = [(name, factory) for name, factory in BACKENDS if name != "memory"]


@pytest.fixture(params=[f for _, f in SHARED], ids=[n for n, _ in SHARED])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    factory: BackendFactory = request.param
    return factory(tmp_path)


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE runs (value TEXT, at REAL, pid INTEGER)")
    return str(path)


def _runs(db: str, value: str | None = None) -> list[tuple[str, float, int]]:
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute("SELECT value, at, pid FROM runs ORDER BY rowid").fetchall()
    return [r for r in rows if value is None or r[0] == value]


def _dispatcher(url: str) -> Iterator[EventBus]:
    bus = EventBus(url)
    bus.use_for_jobs("default")
    yield bus
    unregister_connection("queue")


@pytest.fixture
def shared_bus(shared_url: str) -> Iterator[EventBus]:
    yield from _dispatcher(shared_url)


@pytest.fixture
async def any_bus(bus_url: str) -> AsyncIterator[EventBus]:
    # Closed on the test's loop: a worker run in the test made clients there (a network
    # backend's sockets would outlive the loop otherwise).
    for bus in _dispatcher(bus_url):
        yield bus
        await bus.aclose()


def test_worker_processes_compete_for_one_queue(shared_bus: EventBus, db: str) -> None:
    workers = [spawn("work", shared_bus.url, "default", 1, 5.0) for _ in range(3)]
    try:
        for n in range(45):
            nap.dispatch(db, f"job-{n}", 0.05, connection="queue")
        wait_for(lambda: len(_runs(db)) == 45, timeout=60)
        runs = _runs(db)
        assert sorted(r[0] for r in runs) == sorted(f"job-{n}" for n in range(45))  # once each
        busy = {pid for _, _, pid in runs}
        assert len(busy) == 3, f"only {len(busy)} of 3 workers got jobs"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        assert [w.wait(timeout=30) for w in workers] == [0, 0, 0]


async def test_a_delayed_job_holds_up_no_due_one(any_bus: EventBus, db: str) -> None:
    for n in range(20):
        record.dispatch(db, f"later-{n}", connection="queue", delay=3600)
    record.dispatch(db, "now", connection="queue")
    worker = any_bus.worker("default", concurrency=1)
    running = asyncio.create_task(worker.run())
    try:
        # Far below the hour the delayed jobs wait; room for a Kafka group to form under load.
        deadline = time.monotonic() + 30
        while not _runs(db):
            assert time.monotonic() < deadline, "the due job waited behind delayed ones"
            await asyncio.sleep(0.01)
        assert [r[0] for r in _runs(db)] == ["now"]
        depth = (await any_bus.queue_stats("default"))["default"]
        assert (depth.delayed, depth.ready, depth.running) == (20, 0, 0)
    finally:
        worker.stop()
        await running


async def test_priority_then_due_time_then_dispatch_order(any_bus: EventBus, db: str) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    record.dispatch(db, "plain-1", connection="queue")
    record.dispatch(db, "urgent", connection="queue", priority=10)
    record.dispatch(db, "plain-2", connection="queue")
    record.dispatch(db, "overdue", connection="queue", at=past)
    record.dispatch(db, "low", connection="queue", priority=-1)
    worker = any_bus.worker("default", concurrency=1)
    await worker.run(stop_when_idle=True)
    assert [r[0] for r in _runs(db)] == ["urgent", "overdue", "plain-1", "plain-2", "low"]


async def test_due_times_are_kept(any_bus: EventBus, db: str) -> None:
    start = time.time()
    record.dispatch(db, "at", connection="queue", at=datetime.now(UTC) + timedelta(seconds=0.4))
    await any_bus.worker("default").run(stop_when_idle=True)
    [(_, at, _)] = _runs(db)
    assert at - start >= 0.4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": -1}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"at": datetime(2030, 1, 1)}, "aware"),
        ({"at": "tomorrow"}, "aware"),
        ({"priority": 1.5}, "priority"),
        ({"priority": True}, "priority"),
        ({"delay": 1, "at": datetime.now(UTC)}, "not both"),
    ],
)
async def test_bad_dispatch_arguments_enqueue_nothing(
    any_bus: EventBus, db: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(DispatchError, match=message):
        record.dispatch(db, "x", connection="queue", **options)  # type: ignore[arg-type]
    assert await any_bus.queue_stats() == {}


def test_a_job_that_kills_its_worker_uses_its_tries_then_fails(
    shared_bus: EventBus, db: str
) -> None:
    exit_now.dispatch(db, connection="queue")  # tries=2
    for _ in range(2):  # each delivery kills the worker that got it
        worker = spawn("work", shared_bus.url, "default", 1, 0.5)
        assert worker.wait(timeout=60) == 3
    # A third worker finds the second's lease expired: that was the job's last try,
    # so it fails the job instead of delivering it a third time.
    third = spawn("work", shared_bus.url, "default", 1, 0.5)
    try:
        (failed,) = wait_for(lambda: shared_bus.failed_jobs("default"), timeout=30)
        assert failed.attempts == 2
        assert failed.error.startswith("WorkerDied: the worker running attempt 2 of 2")
        time.sleep(1.0)  # two leases: time for a wrong third delivery to happen
        assert len(_runs(db, "delivered")) == 2
    finally:
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=30) == 0


def test_sigterm_finishes_within_grace_and_hands_back_the_rest(
    shared_bus: EventBus, db: str, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    worker = spawn("work", shared_bus.url, "default", 2, 30.0, 1.0)
    try:
        attempt_until_file.dispatch(db, str(flag), connection="queue")  # outlasts the grace
        nap.dispatch(db, "quick", 0.5, connection="queue")
        wait_for(lambda: _runs(db, "started 1"), timeout=30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert [r[0] for r in _runs(db, "quick")] == ["quick"]  # finished within the grace
    depth = shared_bus.queue_stats_sync("default")["default"]
    assert (depth.running, depth.ready) == (0, 1)  # handed back at once: no lease wait
    flag.touch()
    second = spawn("work", shared_bus.url, "default", 1, 30.0)
    try:
        wait_for(lambda: _runs(db, "finished"), timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    # The stopped attempt did not use the job's one try: it ran again as attempt 1.
    assert [r[0] for r in _runs(db) if r[0].startswith("started")] == ["started 1"] * 2
    assert shared_bus.failed_jobs() == []
