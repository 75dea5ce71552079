"""The scope model: defer, forget, scope(), ordering, gating, failures, limits."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import afterward
from afterward import (
    InvalidCallbackError,
    NoScopeError,
    _runtime,
    correlation_id,
    defer,
    forget,
    scope,
)
from tests.support import wait_for


def test_defer_outside_a_scope_names_the_fix() -> None:
    with pytest.raises(NoScopeError, match=r"DeferMiddleware.*afterward\.scope\(\)"):
        defer(print)
    with pytest.raises(NoScopeError):
        forget("x")


def test_callbacks_run_at_scope_exit_in_registration_order() -> None:
    ran: list[str] = []
    with scope():
        defer(ran.append, "a")
        defer(ran.append, "b")
        defer(ran.append, "c")
        assert ran == []
    assert ran == ["a", "b", "c"]


def test_same_name_replaces_and_keeps_position() -> None:
    ran: list[str] = []
    with scope():
        first = defer(ran.append, "first", name="x")
        defer(ran.append, "middle")
        defer(ran.append, "replacement", name="x")
    assert ran == ["replacement", "middle"]
    assert first.state == "replaced"


def test_forget_cancels_a_named_callback() -> None:
    ran: list[str] = []
    with scope():
        cb = defer(ran.append, "gone", name="gone")
        defer(ran.append, "kept")
        assert forget("gone") is True
        assert forget("gone") is False
        assert forget("never") is False
    assert ran == ["kept"]
    assert cb.state == "forgotten"


def test_exception_in_block_runs_only_always_callbacks() -> None:
    ran: list[str] = []
    with pytest.raises(KeyError), scope():
        defer(ran.append, "normal")
        defer(ran.append, "always", always=True)
        raise KeyError("boom")
    assert ran == ["always"]
    assert afterward.stats()["defer.skipped"] == 1


def test_failing_callback_is_logged_counted_and_does_not_stop_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def explode() -> None:
        raise RuntimeError("smtp down")

    with caplog.at_level(logging.ERROR, logger="afterward.defer"), scope("cid-42"):
        defer(explode, name="email")
        defer(ran.append, "after")
    assert ran == ["after"]
    assert afterward.stats()["defer.failed"] == 1
    assert afterward.stats()["defer.completed"] == 1
    [record] = caplog.records
    assert "email" in record.getMessage() and "cid-42" in record.getMessage()
    assert record.correlation_id == "cid-42"  # type: ignore[attr-defined]
    assert record.exc_info is not None and "smtp down" in str(record.exc_info[1])


def test_defer_while_running_joins_the_same_run() -> None:
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        defer(ran.append, "added-by-first")

    with scope():
        defer(first)
        defer(ran.append, "second")
    assert ran == ["first", "second", "added-by-first"]


def test_sync_callbacks_run_off_the_loop_thread_and_coroutines_on_it() -> None:
    threads: dict[str, int] = {}

    async def coro() -> None:
        threads["coro"] = threading.get_ident()

    def plain() -> None:
        threads["plain"] = threading.get_ident()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            threads["no_loop"] = 1

    async def main() -> None:
        async with scope():
            defer(coro)
            defer(plain)
        threads["loop"] = threading.get_ident()

    asyncio.run(main())
    assert threads["coro"] == threads["loop"]
    assert threads["plain"] != threads["loop"]
    assert threads["no_loop"] == 1


def test_callbacks_see_the_correlation_id_and_args() -> None:
    seen: list[tuple[str | None, int, str]] = []

    def record(n: int, *, label: str) -> None:
        seen.append((correlation_id(), n, label))

    with scope("req-1"):
        defer(record, 1, label="x")
    assert seen == [("req-1", 1, "x")]


def test_defer_captures_a_correlation_id_bound_at_call_time() -> None:
    seen: list[str | None] = []
    with scope("outer"):
        with afterward.correlate("inner"):
            defer(lambda: seen.append(correlation_id()))
        defer(lambda: seen.append(correlation_id()))
    assert seen == ["inner", "outer"]


@pytest.mark.parametrize("bad", [None, 42, "not callable"])
def test_defer_rejects_non_callables(bad: object) -> None:
    with scope(), pytest.raises(InvalidCallbackError, match="callable"):
        defer(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", 3, b"x"])
def test_defer_rejects_bad_names(name: object) -> None:
    with scope(), pytest.raises(InvalidCallbackError, match="non-empty string"):
        defer(print, name=name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", 3, ["x"]])
def test_forget_rejects_bad_names(name: object) -> None:
    with scope(), pytest.raises(InvalidCallbackError, match=r"forget\(\) name"):
        forget(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("cid", ["", "two\nlines", 42])
def test_scope_rejects_bad_correlation_ids(cid: object) -> None:
    with pytest.raises(afterward.ConfigError, match="correlation_id"):
        scope(cid)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [-1, "5", True])
async def test_drain_rejects_bad_timeouts(timeout: object) -> None:
    with pytest.raises(afterward.ConfigError, match=r"drain\(\) timeout"):
        await afterward.drain(timeout)  # type: ignore[arg-type]
    with pytest.raises(afterward.ConfigError, match=r"drain_sync\(\) timeout"):
        afterward.drain_sync(timeout)  # type: ignore[arg-type]


def test_bad_input_errors_are_type_errors_too() -> None:
    with scope(), pytest.raises(TypeError):
        defer(None)  # type: ignore[arg-type]


def test_max_concurrency_bounds_callbacks_across_scopes() -> None:
    afterward.configure(max_concurrency=2)
    active = 0
    peak = 0
    started = 0
    lock = threading.Lock()
    release = threading.Event()

    def work() -> None:
        nonlocal active, peak, started
        with lock:
            active += 1
            started += 1
            peak = max(peak, active)
        release.wait(5)
        with lock:
            active -= 1

    def request() -> None:
        with scope():
            defer(work)

    try:
        threads = [threading.Thread(target=request) for _ in range(5)]
        for t in threads:
            t.start()
        wait_for(lambda: started == 2)
        # Give the other three every chance to (wrongly) start, then check they did not.
        assert not release.wait(0.2)
        assert started == 2
        release.set()
        for t in threads:
            t.join(5)
        assert started == 5
        assert peak == 2
    finally:
        afterward.configure(max_concurrency=64)


def test_scope_exposes_callbacks_and_run_now() -> None:
    ran: list[int] = []
    with scope() as s:
        defer(ran.append, 1)
        s.run_now()
        assert ran == [1]
        defer(ran.append, 2)
        assert [c.state for c in s.callbacks] == ["done", "pending"]
    assert ran == [1, 2]


async def test_async_scope_waits_for_coroutines() -> None:
    ran: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0)
        ran.append("later")

    async with scope():
        defer(later)
        assert ran == []
    assert ran == ["later"]


def test_configure_rejects_bad_values() -> None:
    with pytest.raises(afterward.ConfigError, match="max_concurrency"):
        afterward.configure(max_concurrency=0)
    with pytest.raises(afterward.ConfigError, match="unknown option"):
        afterward.configure(nope=1)
    with pytest.raises(ValueError):
        afterward.configure(grace_period=-1)


def test_a_slot_waiting_on_a_closed_loop_is_not_leaked() -> None:
    afterward.configure(max_concurrency=1)
    limiter = _runtime._Limiter()
    try:
        asyncio.run(limiter.acquire())  # takes the only slot
        dead = asyncio.new_event_loop()
        waiting = dead.create_task(limiter.acquire())
        dead.run_until_complete(asyncio.sleep(0))  # now queued for a slot
        assert not waiting.done()
        waiting._log_destroy_pending = False  # type: ignore[attr-defined]  # dies with its loop
        dead.close()  # e.g. a server's loop that ended with work still waiting
        limiter.release()  # must not hand the slot to the dead loop and lose it
        asyncio.run(asyncio.wait_for(limiter.acquire(), 2))
    finally:
        afterward.configure(max_concurrency=64)


def test_drain_waits_for_a_run_restarted_while_the_last_one_ended() -> None:
    release = threading.Event()
    late: list[str] = []
    defer_scope = scope()
    original = defer_scope.next_callback

    def next_callback() -> object:
        taken = original()
        if taken is None and not late:
            # Another thread adds a callback (a transaction committing late) just as
            # the first run ends: the scope starts a second run.
            late.append("added")
            adder = threading.Thread(
                target=defer_scope._add,
                args=(afterward.DeferredCallback(release.wait, (5,), {}, "late", False, "c"), None),
            )
            adder.start()
            adder.join()
        return taken

    defer_scope.next_callback = next_callback  # type: ignore[method-assign]
    with defer_scope:
        defer(lambda: None)
    try:
        assert late == ["added"]
        assert afterward.drain_sync(0.2) is False  # the late callback is still running
    finally:
        release.set()


async def test_cancelling_a_task_leaving_an_async_scope_keeps_its_run_intact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gc

    release = asyncio.Event()
    done: list[str] = []

    async def slow() -> None:
        await release.wait()
        done.append("slow")

    opened: list[afterward.DeferScope] = []

    async def block() -> None:
        async with scope() as defer_scope:
            opened.append(defer_scope)
            defer(slow)

    def our_run() -> Any:
        runs = [done for s, _, done in _runtime._pending_runs() if opened and s is opened[0]]
        return runs[0] if runs else None

    task = asyncio.create_task(block())
    await async_wait_for(our_run)  # the scope is waiting for its callbacks
    run = our_run()
    task.cancel()  # e.g. a client hung up while the scope waited for its callbacks
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not run.cancelled()  # drains wait on it: it must end when the run ends
    release.set()
    assert await afterward.drain(5) is True
    assert done == ["slow"]
    gc.collect()
    assert "InvalidStateError" not in caplog.text


async def async_wait_for(predicate: Any, timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.005)


def test_sync_scope_on_afterwards_own_loop_raises_instead_of_deadlocking() -> None:
    from afterward import _loop

    ran: list[str] = []

    async def misuse() -> None:
        with scope():
            defer(ran.append, "still runs")

    with pytest.raises(afterward.BlockingCallError, match=r"async with afterward\.scope"):
        _loop.run_sync(asyncio.wait_for(misuse(), 5))
    wait_for(lambda: ran == ["still runs"])

    async def sync_twin() -> None:
        from afterward import concurrency

        concurrency.run_sync([print], driver="thread")

    with pytest.raises(afterward.BlockingCallError) as caught:
        _loop.run_sync(sync_twin())
    assert isinstance(caught.value, RuntimeError)
