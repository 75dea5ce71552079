"""The scope model: defer, forget, scope(), ordering, gating, failures, limits."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import afterward
from afterward import (
    InvalidCallbackError,
    NoScopeError,
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
