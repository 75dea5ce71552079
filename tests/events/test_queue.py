"""The durable ``queue`` job connection, ``afterward worker`` and its crash safety."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from afterward.events import EventBus, subscribe_worker
from afterward.jobs import unregister_connection
from tests.events.jobs_app import AppendEffect, Flaky, block_until_file, record
from tests.events.procs import spawn
from tests.support import wait_for


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE runs (value TEXT, at REAL, pid INTEGER)")
        conn.execute("CREATE TABLE done (job_id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE effects (n INTEGER)")
        conn.execute("CREATE TABLE deliveries (n INTEGER)")
    return str(path)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[EventBus]:
    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}")
    bus.use_for_jobs("default")
    yield bus
    unregister_connection("queue")


def _runs(db: str, value: str | None = None) -> list[tuple[str, float, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT value, at, pid FROM runs ORDER BY rowid").fetchall()
    return [r for r in rows if value is None or r[0] == value]


async def test_queue_job_runs_in_a_worker(bus: EventBus, db: str) -> None:
    record.dispatch(db, "hello", connection="queue")
    subscribe_worker(bus)
    await bus.drain()
    assert [r[0] for r in _runs(db)] == ["hello"]


async def test_retries_with_backoff_then_success(bus: EventBus, db: str) -> None:
    Flaky(db, failures=2).dispatch(connection="queue")
    subscribe_worker(bus)
    await bus.drain()
    tries = _runs(db, "try")
    assert len(tries) == 3 and [r[0] for r in _runs(db)][-1] == "done"
    assert tries[1][1] - tries[0][1] >= 0.05 and tries[2][1] - tries[1][1] >= 0.1
    assert await bus.failed_jobs_async() == []


async def test_exhausted_job_is_stored_failed_then_retried_or_discarded(
    bus: EventBus, db: str
) -> None:
    Flaky(db, failures=5).dispatch(connection="queue")
    subscribe_worker(bus)
    await bus.drain()
    assert len(_runs(db, "try")) == 3
    assert len(_runs(db, "failed-hook")) == 1
    [failed] = bus.failed_jobs()
    assert failed.queue == "default" and failed.attempts == 3
    assert failed.path.endswith("jobs_app:Flaky")
    assert failed.error == "RuntimeError: attempt 3 fails"
    assert "Traceback" in failed.traceback
    await bus.retry_failed_job(failed.id)  # three more tries: 4 and 5 fail, then done
    await bus.drain()
    assert len(_runs(db, "try")) == 6
    assert [r[0] for r in _runs(db)][-1] == "done"
    assert bus.failed_jobs() == []

    Flaky(db, failures=100).dispatch(connection="queue")
    await bus.drain()
    [failed] = await bus.failed_jobs_async("default")
    await bus.discard_failed_job(failed.id)
    assert bus.failed_jobs() == []
    from afterward import NotFoundError

    with pytest.raises(NotFoundError):
        await bus.discard_failed_job(failed.id)


async def test_delay(bus: EventBus, db: str) -> None:
    dispatched = time.time()
    record.dispatch(db, "later", connection="queue", delay=0.3)
    subscribe_worker(bus)
    await bus.drain()
    [(_, at, _)] = _runs(db)
    assert at - dispatched >= 0.3


def test_worker_stops_cleanly_on_sigterm(bus: EventBus, db: str) -> None:
    worker = spawn("work", bus.url, "default", 2, 30.0)
    for n in range(20):
        record.dispatch(db, f"job-{n}", connection="queue")
    wait_for(lambda: len(_runs(db)) == 20, timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    depth = bus.queue_stats_sync("default").get("default")
    assert depth is None or (depth.ready, depth.running, depth.delayed) == (0, 0, 0)


def test_a_job_in_flight_is_redelivered_after_its_worker_dies(
    bus: EventBus, db: str, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    block_until_file.dispatch(db, str(flag), connection="queue")
    first = spawn("work", bus.url, "default", 1, 1.0)
    wait_for(lambda: _runs(db, "started"), timeout=30)
    first.kill()  # SIGKILL mid-job
    first.wait()
    flag.touch()
    second = spawn("work", bus.url, "default", 1, 1.0)
    try:
        wait_for(lambda: _runs(db, "finished"), timeout=30)  # after the 1 s lease
        assert len(_runs(db, "started")) == 2
    finally:
        second.terminate()
        second.wait(timeout=30)


@pytest.mark.slow
def test_crash_test_sigkill_at_random_points(bus: EventBus, db: str) -> None:
    jobs = 1000
    for n in range(jobs):
        AppendEffect(db, n).dispatch(connection="queue")
    rng = random.Random(5)

    def count(table: str) -> int:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    kills = 0
    while count("done") < jobs:
        worker = spawn("work", bus.url, "default", 4, 1.0)
        if kills < 12:
            # Let it get somewhere, then kill it at a random moment.
            start = count("deliveries")
            wait_for(lambda: count("deliveries") > start, timeout=30)  # noqa: B023
            time.sleep(rng.uniform(0, 0.15))  # a random kill point, not synchronization
            worker.kill()
            worker.wait()
            kills += 1
        else:
            wait_for(lambda: count("done") == jobs, timeout=60)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
    with sqlite3.connect(db) as conn:
        effects = [n for (n,) in conn.execute("SELECT n FROM effects")]
    assert sorted(effects) == list(range(jobs))  # every effect, exactly once
    assert kills >= 5
    repeats = count("deliveries") - jobs
    assert repeats > 0  # the kills did cause redeliveries...
    assert repeats <= 4 * kills  # ...of the jobs in flight only (-c 4): per-job acks


def test_deferred_jobs_pending_at_exit_move_to_the_queue(bus: EventBus, db: str) -> None:
    import subprocess
    import sys

    code = f"""
import afterward
from afterward.events import EventBus
from tests.events.jobs_app import FailsFirst
bus = EventBus({bus.url!r})
bus.use_for_jobs("default")
with afterward.scope():
    FailsFirst({db!r}).dispatch(connection="deferred")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=Path.cwd())
    assert len(_runs(db, "try")) == 1  # the first attempt failed in that process
    assert bus.lag_sync() == {}  # no worker group yet; the job waits on the queue
    subscribe_worker(bus)
    bus.drain_sync()
    assert len(_runs(db, "try")) == 2
    assert bus.failed_jobs() == []
