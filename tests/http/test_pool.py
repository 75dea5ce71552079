"""http.pool / pool_sync against a real server: concurrency, caps, order, failures."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from afterward import ConfigError, InvalidRequestError, http
from tests.http.conftest import Server


def tag() -> str:
    return uuid.uuid4().hex[:12]


def delayed(server: Server, ms: int, t: str) -> http.PendingRequest:
    return http.get(f"{server.url}/delay/{ms}", params={"tag": t})


async def test_results_keep_definition_order_not_arrival_order(server: Server) -> None:
    t = tag()
    keyed = await http.pool(
        {
            "slow": delayed(server, 300, t),
            "fast": delayed(server, 0, t),
            "mid": delayed(server, 100, t),
        }
    )
    assert list(keyed) == ["slow", "fast", "mid"]
    assert [r.json()["slept"] for r in keyed.values()] == [300, 0, 100]  # type: ignore[union-attr]
    ordered = await http.pool([delayed(server, ms, t) for ms in (200, 0, 100, 50)])
    assert [r.json()["slept"] for r in ordered] == [200, 0, 100, 50]  # type: ignore[union-attr]


async def test_all_at_once_when_concurrency_allows(server: Server) -> None:
    t = tag()
    start = time.monotonic()
    results = await http.pool([delayed(server, 200, t) for _ in range(20)], concurrency=20)
    elapsed = time.monotonic() - start
    assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in results)
    # Serially this takes 4 s; concurrently one round trip of 200 ms plus overhead.
    assert elapsed < 1.6, elapsed
    assert server.state.max_inflight[t] >= 10


async def test_a_concurrency_cap_is_a_real_cap(server: Server) -> None:
    t = tag()
    start = time.monotonic()
    await http.pool([delayed(server, 100, t) for _ in range(10)], concurrency=2)
    elapsed = time.monotonic() - start
    assert server.state.max_inflight[t] == 2
    assert elapsed >= 0.49, elapsed  # 10 requests, 2 at a time, 100 ms each: 5 rounds


async def test_default_concurrency_is_sixteen_in_flight(server: Server) -> None:
    t = tag()
    assert http.DEFAULT_CONCURRENCY == 16
    await http.pool([delayed(server, 200, t) for _ in range(24)])
    assert 10 <= server.state.max_inflight[t] <= 16


async def test_failures_are_results_not_exceptions(server: Server) -> None:
    results = await http.pool(
        {
            "ok": http.get(f"{server.url}/echo"),
            "error": http.get(f"{server.url}/status/500"),
            "timeout": http.get(f"{server.url}/hang", timeout=0.2),
            "dropped": http.get(f"{server.url}/drop/"),
            "refused": http.get("http://127.0.0.1:9/"),
        }
    )
    assert isinstance(results["ok"], httpx.Response) and results["ok"].status_code == 200
    assert isinstance(results["error"], httpx.Response) and results["error"].status_code == 500
    assert isinstance(results["timeout"], httpx.TimeoutException)
    assert isinstance(results["dropped"], httpx.TransportError)
    assert isinstance(results["refused"], httpx.ConnectError)


async def test_connections_are_reused_across_pools(server: Server) -> None:
    t = tag()
    for _ in range(4):
        await http.pool([delayed(server, 20, t) for _ in range(8)], concurrency=8)
    # 32 requests, never more than 8 in flight: at most 8 connections (+ slack for a
    # connection the server closed between rounds), not 32.
    assert len(server.state.ports[t]) <= 10, server.state.ports[t]


async def test_empty_pools() -> None:
    assert await http.pool({}) == {}
    assert await http.pool([]) == []


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "4"])
async def test_bad_concurrency_raises_before_anything_is_sent(bad: object) -> None:
    with http.fake() as fake:
        with pytest.raises(ConfigError, match="concurrency must be an int >= 1"):
            await http.pool([http.get("https://x.test/")], concurrency=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            http.pool_sync([http.get("https://x.test/")], concurrency=bad)  # type: ignore[arg-type]
    fake.assert_sent_count(0)


async def test_bad_input_raises_before_anything_is_sent() -> None:
    with http.fake() as fake:
        with pytest.raises(InvalidRequestError, match="dict or a list"):
            await http.pool(http.get("https://x.test/"))  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="dict or a list"):
            await http.pool({http.get("https://x.test/")})  # type: ignore[call-overload]
        with pytest.raises(InvalidRequestError, match="'b' is str"):
            await http.pool({"a": http.get("https://x.test/"), "b": "https://x.test/"})  # type: ignore[dict-item]
        response = await http.get("https://x.test/")
        with pytest.raises(InvalidRequestError, match=r"index 1 is Response.*await"):
            await http.pool([http.get("https://x.test/"), response])  # type: ignore[list-item]
    fake.assert_sent_count(1)  # only the one awaited by hand


def test_pool_sync_from_plain_threads(server: Server) -> None:
    t = tag()
    outcomes: list[list[int]] = []

    def work() -> None:
        results = http.pool_sync([delayed(server, 100, t) for _ in range(8)], concurrency=8)
        outcomes.append([r.status_code for r in results])  # type: ignore[union-attr]

    threads = [threading.Thread(target=work) for _ in range(3)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert outcomes == [[200] * 8] * 3
    assert time.monotonic() - start < 2.0  # 24 requests of 100 ms, far from serial 2.4 s
    assert server.state.max_inflight[t] >= 8


async def test_pool_sync_from_a_running_loops_thread(server: Server) -> None:
    results = http.pool_sync({"a": http.get(f"{server.url}/echo")})
    assert results["a"].status_code == 200  # type: ignore[union-attr]
