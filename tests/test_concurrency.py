"""``afterward.concurrency``: drivers, errors, timeouts and no orphan processes."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from pathlib import Path

import pytest

import afterward
from afterward import (
    ConfigError,
    InvalidCallbackError,
    NoScopeError,
    TaskError,
    TaskTimeout,
    concurrency,
)
from afterward.concurrency._process import pool
from tests.support import process_gone, wait_for


def square(n: int) -> int:
    return n * n


def fail() -> None:
    raise ValueError("broken task")


@pytest.mark.parametrize("driver", ["async", "thread", "process", "sync"])
async def test_results_come_back_in_order(driver: concurrency.Driver) -> None:
    async def coro() -> str:
        await asyncio.sleep(0.01)
        return "coro"

    tasks = [lambda: "a", coro, lambda: square(4)]
    assert await concurrency.run(tasks, driver=driver) == ["a", "coro", 16]


def test_run_sync_defaults_and_sync_driver_in_the_caller() -> None:
    caller = threading.get_ident()
    assert concurrency.run_sync([threading.get_ident]) != [caller]
    assert concurrency.run_sync([threading.get_ident], driver="sync") == [caller]
    assert concurrency.run_sync([]) == []


def test_sync_driver_keeps_sync_tasks_in_the_caller_next_to_coroutines() -> None:
    caller = threading.get_ident()

    async def coro() -> str:
        return "coro"

    async def slow() -> None:
        await asyncio.sleep(30)

    assert concurrency.run_sync([threading.get_ident, coro], driver="sync") == [caller, "coro"]
    with pytest.raises(TaskTimeout, match="in task 1"):
        concurrency.run_sync([lambda: 1, slow], driver="sync", timeout=0.2)


async def test_default_driver_is_async_for_coroutines() -> None:
    loop_thread = threading.get_ident()

    async def where() -> int:
        return threading.get_ident()

    assert await concurrency.run([where, where]) == [loop_thread, loop_thread]


def test_process_driver_runs_closures_in_reused_workers() -> None:
    base = 10
    pids = concurrency.run_sync([lambda: os.getpid(), lambda: base + 1], driver="process")
    assert pids[0] != os.getpid() and pids[1] == 11
    again = concurrency.run_sync([os.getpid], driver="process")
    assert again[0] in pool().pids()


@pytest.mark.parametrize("driver", ["async", "thread", "process", "sync"])
async def test_task_error_has_index_error_and_cause(driver: concurrency.Driver) -> None:
    with pytest.raises(TaskError) as caught:
        await concurrency.run([lambda: 1, fail], driver=driver)
    error = caught.value
    assert error.index == 1
    assert isinstance(error.error, ValueError) and error.__cause__ is error.error
    printed = "".join(traceback.format_exception(error))
    assert 'raise ValueError("broken task")' in printed  # remote traceback for processes


@pytest.mark.parametrize("driver", ["async", "thread", "process", "sync"])
async def test_a_tasks_own_timeout_error_is_a_task_error(driver: concurrency.Driver) -> None:
    def sync_timeout() -> None:
        raise TimeoutError("socket timed out")

    async def async_timeout() -> None:
        raise TimeoutError("socket timed out")

    for task in (sync_timeout, async_timeout):
        with pytest.raises(TaskError) as caught:
            await concurrency.run([task], driver=driver)
        assert isinstance(caught.value.error, TimeoutError)
        assert not isinstance(caught.value, TimeoutError)


async def test_timeout_cancels_coroutines_at_once() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with pytest.raises(TaskTimeout) as caught:
        await concurrency.run([slow], timeout=0.1)
    assert isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started < 2
    await asyncio.wait_for(cancelled.wait(), 2)


def test_timeout_abandons_threads() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TaskTimeout):
        concurrency.run_sync([lambda: release.wait(30)], driver="thread", timeout=0.1)
    assert time.monotonic() - started < 2
    release.set()


def test_timeout_kills_process_workers_leaving_no_orphans(tmp_path: Path) -> None:
    def hang(n: int) -> None:
        (tmp_path / f"pid{n}").write_text(str(os.getpid()))
        time.sleep(60)

    tasks = [lambda: hang(0), lambda: hang(1)]
    with pytest.raises(TaskTimeout):
        concurrency.run_sync(tasks, driver="process", timeout=1.5)
    pids = [int((tmp_path / f"pid{n}").read_text()) for n in range(2)]
    for pid in pids:
        wait_for(lambda pid=pid: process_gone(pid), timeout=5)  # killed and reaped: no zombie
        assert pid not in pool().pids()


def test_a_failing_task_stops_a_hung_process_task(tmp_path: Path) -> None:
    def hang() -> None:
        (tmp_path / "pid").write_text(str(os.getpid()))
        time.sleep(60)

    def fail_later() -> None:
        wait_for(lambda: (tmp_path / "pid").exists())
        raise ValueError("late")

    with pytest.raises(TaskError) as caught:
        concurrency.run_sync([hang, fail_later], driver="process", timeout=20)
    assert caught.value.index == 1
    pid = int((tmp_path / "pid").read_text())
    wait_for(lambda: process_gone(pid), timeout=5)


@pytest.mark.parametrize(
    ("tasks", "driver", "timeout", "error"),
    [
        (print, None, None, InvalidCallbackError),
        ("abc", None, None, InvalidCallbackError),
        ([print, 3], None, None, InvalidCallbackError),
        ([print], "fibers", None, ConfigError),
        ([print], None, -1, ConfigError),
        ([print], None, True, ConfigError),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    tasks: object, driver: object, timeout: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        concurrency.run_sync(tasks, driver=driver, timeout=timeout)  # type: ignore[arg-type]
    assert issubclass(InvalidCallbackError, TypeError) and issubclass(ConfigError, ValueError)


def test_defer_runs_after_the_scope_and_needs_one() -> None:
    seen: list[int] = []
    with afterward.scope():
        concurrency.defer([lambda: seen.append(1), lambda: seen.append(2)], driver="thread")
        concurrency.defer([lambda: seen.append(3)], driver="sync")
        assert seen == []
    assert sorted(seen) == [1, 2, 3]
    with pytest.raises(NoScopeError):
        concurrency.defer([print])


def test_deferred_process_run_failure_is_logged_and_counted() -> None:
    with afterward.scope():
        concurrency.defer([fail], driver="process")
    assert afterward.stats()["defer.failed"] == 1
