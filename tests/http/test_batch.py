"""http.batch: hook order and counts, state, failures, isolation of hooks, sync twin."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import httpx
import pytest

import afterward
from afterward import InvalidCallbackError, http
from tests.http.conftest import Server


def tag() -> str:
    return uuid.uuid4().hex[:12]


class Recorder:
    """Every hook call, with the batch's state at that moment."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.threads: set[str] = set()

    def hooks(self, batch: http.Batch[Any, Any]) -> http.Batch[Any, Any]:
        def note(kind: str, *args: Any) -> None:
            self.threads.add(threading.current_thread().name)
            b = args[0]
            self.calls.append((kind, *args[1:], b.processed_requests, b.pending_requests))

        return (
            batch.before(lambda b: note("before", b))
            .progress(lambda b, key, response: note("progress", b, key))
            .then(lambda b, results: note("then", b))
            .catch(lambda b, key, error: note("catch", b, key, type(error).__name__))
            .finally_(lambda b, results: note("finally", b))
        )

    def kinds(self) -> list[str]:
        return [call[0] for call in self.calls]


async def test_hooks_on_success_run_once_each_in_order(server: Server) -> None:
    rec = Recorder()
    requests = {
        k: http.get(f"{server.url}/delay/{ms}") for k, ms in [("a", 150), ("b", 0), ("c", 60)]
    }
    batch = rec.hooks(http.batch(requests))
    results = await batch.send()
    assert list(results) == ["a", "b", "c"]
    assert rec.kinds() == ["before", "progress", "progress", "progress", "then", "finally"]
    assert rec.calls[0] == ("before", 0, 3)
    # progress arrives in completion order, each seeing itself counted.
    assert rec.calls[1:4] == [
        ("progress", "b", 1, 2),
        ("progress", "c", 2, 1),
        ("progress", "a", 3, 0),
    ]
    assert (batch.total_requests, batch.processed_requests, batch.pending_requests) == (3, 3, 0)
    assert batch.finished and not batch.has_failures and batch.failed_requests == 0
    assert threading.main_thread().name not in rec.threads  # sync hooks: worker threads


async def test_failures_go_to_catch_and_skip_then(server: Server) -> None:
    rec = Recorder()
    batch = rec.hooks(
        http.batch(
            [
                http.get(f"{server.url}/echo"),
                http.get(f"{server.url}/status/503"),
                http.get(f"{server.url}/hang", timeout=0.3),
                http.get(f"{server.url}/drop/"),
            ]
        )
    )
    results = await batch.send()
    kinds = rec.kinds()
    assert kinds[0] == "before" and kinds[-1] == "finally"
    assert kinds.count("progress") == 1 and kinds.count("catch") == 3 and "then" not in kinds
    caught = {call[1]: call[2] for call in rec.calls if call[0] == "catch"}
    assert caught[1] == "Response"
    assert caught[2] == "ReadTimeout"
    assert issubclass(getattr(httpx, caught[3]), httpx.TransportError)
    assert batch.has_failures and batch.failed_requests == 3 and batch.finished
    assert isinstance(results[2], httpx.TimeoutException)


async def test_async_and_sync_hooks_mix(server: Server) -> None:
    calls: list[str] = []

    async def before(b: http.Batch[Any, Any]) -> None:
        await asyncio.sleep(0)
        calls.append("async-before")

    async def progress(b: http.Batch[Any, Any], key: Any, response: httpx.Response) -> None:
        calls.append(f"async-progress-{key}")

    batch = (
        http.batch([http.get(f"{server.url}/echo")])
        .before(before)
        .before(lambda b: calls.append("sync-before"))
        .progress(progress)
        .finally_(lambda b, r: calls.append("sync-finally"))
    )
    await batch.send()
    assert calls == ["async-before", "sync-before", "async-progress-0", "sync-finally"]


async def test_a_raising_hook_is_logged_counted_and_does_not_stop_finally(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    finals: list[dict[str, Any]] = []

    def broken(*args: Any) -> None:
        raise RuntimeError("hook bug")

    async def broken_async(*args: Any) -> None:
        raise ValueError("async hook bug")

    batch = (
        http.batch({"a": http.get(f"{server.url}/echo"), "b": http.get(f"{server.url}/status/404")})
        .before(broken)
        .progress(broken_async)
        .catch(broken)
        .finally_(lambda b, results: finals.append(results))
    )
    with caplog.at_level(logging.ERROR, logger="afterward.http"), afterward.correlate("cid-77"):
        results = await batch.send()
    assert len(finals) == 1 and finals[0] is results
    assert results["a"].status_code == 200  # type: ignore[union-attr]
    assert afterward.stats()["hooks.failed"] == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "afterward.http"]
    assert len(messages) == 3
    assert all("correlation_id=cid-77" in m for m in messages)
    assert any("RuntimeError: hook bug" in m for m in messages)


async def test_a_raising_then_still_runs_finally(server: Server) -> None:
    finals: list[str] = []

    def boom(*args: Any) -> None:
        raise RuntimeError("boom")

    batch = (
        http.batch([http.get(f"{server.url}/echo")])
        .then(boom)
        .finally_(lambda b, r: finals.append("x"))
    )
    await batch.send()
    assert finals == ["x"]
    assert afterward.stats()["hooks.failed"] == 1


async def test_a_slow_hook_does_not_hold_a_connection_slot(server: Server) -> None:
    t = tag()
    release = threading.Event()
    seen: list[int] = []

    def slow_progress(b: http.Batch[Any, Any], key: int, response: httpx.Response) -> None:
        seen.append(key)
        if key == 0:
            release.wait(10)

    urls = [f"{server.url}/delay/{ms}" for ms in (0, 50, 50)]
    batch = http.batch([http.get(u, params={"tag": t}) for u in urls], concurrency=1)
    task = asyncio.create_task(batch.progress(slow_progress).send())
    # With one slot, request 2 can only start once request 1 is done: it does start
    # while progress(0) is still blocked.
    await async_wait_for(lambda: len(server.state.correlation_ids[t]) == 3)
    assert seen == [0]
    release.set()
    results = await task
    assert seen == [0, 1, 2]
    assert all(r.status_code == 200 for r in results)  # type: ignore[union-attr]


async def async_wait_for(predicate: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.005)


def test_send_sync_from_a_plain_thread(server: Server) -> None:
    rec = Recorder()
    out: list[Any] = []
    worker = threading.Thread(
        target=lambda: out.append(
            rec.hooks(http.batch([http.get(f"{server.url}/echo")] * 3)).send_sync()
        )
    )
    worker.start()
    worker.join(20)
    assert [r.status_code for r in out[0]] == [200, 200, 200]
    assert rec.kinds() == ["before", "progress", "progress", "progress", "then", "finally"]


def test_hook_and_concurrency_validation() -> None:
    batch = http.batch([http.get("https://x.test/")])
    with pytest.raises(InvalidCallbackError):
        batch.then("not callable")  # type: ignore[arg-type]
    for bad in (0, -2, False, 1.5, None):
        with pytest.raises(ValueError, match="concurrency"):
            batch.concurrency(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        http.batch([], concurrency=0)
    with pytest.raises(TypeError):
        http.batch("https://x.test/")  # type: ignore[call-overload]


async def test_an_empty_batch_still_runs_before_then_finally() -> None:
    rec = Recorder()
    assert await rec.hooks(http.batch({})).send() == {}
    assert rec.kinds() == ["before", "then", "finally"]


async def test_batch_concurrency_is_a_real_cap(server: Server) -> None:
    t = tag()
    requests = [http.get(f"{server.url}/delay/60", params={"tag": t}) for _ in range(6)]
    results = await http.batch(requests).concurrency(3).send()
    assert all(r.status_code == 200 for r in results)  # type: ignore[union-attr]
    assert server.state.max_inflight[t] == 3
