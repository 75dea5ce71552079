"""Retries in pools and batches: precedence, final outcomes for hooks, deferred batches,
1,000 webhooks against a server failing at random, and the fakes' part in it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import httpx
import pytest

import afterward
from afterward import ConfigError, StrayRequestError, http
from afterward.http import _hosts
from tests.http.conftest import Server, tag


def failing(server: Server, n: int, code: int, t: str) -> http.PendingRequest:
    return http.get(f"{server.url}/fail/{n}/{code}", params={"tag": t})


async def test_the_request_beats_the_pool_which_beats_the_default() -> None:
    http.configure(retry=http.Retry(4, backoff=0))
    with http.fake({"https://down.test/*": http.response(status=503)}) as fake:
        await http.get("https://down.test/default")
        await http.pool(
            [http.get("https://down.test/pool"), http.get("https://down.test/own").retry(0)],
            retry=1,
        )
        await http.batch([http.get("https://down.test/batch")]).retry(2, backoff=0).send()
        await http.pool([http.get("https://down.test/none")], retry=None)
        http.configure(retry=None)
        await http.get("https://down.test/unset")
    paths = [r.url.path for r in fake.requests]
    counts = {p: paths.count(p) for p in paths}
    assert counts == {"/default": 5, "/pool": 2, "/own": 1, "/batch": 3, "/none": 1, "/unset": 1}


async def test_the_pool_holds_final_outcomes(server: Server) -> None:
    flaky, dead = tag(), tag()
    results = await http.pool(
        {
            "flaky": failing(server, 2, 503, flaky),
            "dead": failing(server, 9, 500, dead),
            "refused": http.get("http://127.0.0.1:9/"),
        },
        retry=http.Retry(2, backoff=0),
    )
    assert results["flaky"].status_code == 200  # type: ignore[union-attr]
    assert results["dead"].status_code == 500  # type: ignore[union-attr]
    assert isinstance(results["refused"], httpx.ConnectError)
    assert (server.state.hits[flaky], server.state.hits[dead]) == (3, 3)
    assert afterward.stats()["http.retries"] == 6


async def test_batch_hooks_see_each_key_once_with_its_final_outcome(server: Server) -> None:
    tags = {"flaky": tag(), "dead": tag(), "ok": tag()}
    calls: list[tuple[str, str, int]] = []
    finals: list[dict[str, Any]] = []
    batch = (
        http.batch(
            {
                "flaky": failing(server, 1, 503, tags["flaky"]),
                "dead": failing(server, 9, 503, tags["dead"]),
                "ok": failing(server, 0, 503, tags["ok"]),
            }
        )
        .retry(2, backoff=0)
        .progress(lambda b, key, r: calls.append(("progress", key, r.status_code)))
        .catch(lambda b, key, r: calls.append(("catch", key, r.status_code)))
        .finally_(lambda b, results: finals.append(results))
    )
    results = await batch.send()
    assert sorted(calls) == [
        ("catch", "dead", 503),
        ("progress", "flaky", 200),
        ("progress", "ok", 200),
    ]
    assert finals == [results]
    assert (batch.processed_requests, batch.failed_requests) == (3, 1)
    assert [server.state.hits[t] for t in tags.values()] == [2, 3, 1]


async def test_a_deferred_batch_retries_inside_a_scope(server: Server) -> None:
    t = tag()
    finals: list[Any] = []
    async with afterward.scope("cid-deferred"):
        http.batch([failing(server, 2, 503, t)], retry=http.Retry(2, backoff=0)).finally_(
            lambda b, results: finals.append(results)
        ).defer()
        assert finals == []
    assert finals[0][0].status_code == 200
    assert server.state.correlation_ids[t] == ["cid-deferred"] * 3


def test_sync_twins_retry(server: Server) -> None:
    tags = [tag() for _ in range(3)]
    results: list[int] = []

    def work() -> None:
        pooled = http.pool_sync([failing(server, 1, 503, tags[0])], retry=1)
        batched = http.batch([failing(server, 1, 503, tags[1])]).retry(1, backoff=0).send_sync()
        with afterward.scope():
            http.batch([failing(server, 1, 503, tags[2])], retry=1).finally_(
                lambda b, r: results.append(r[0].status_code)
            ).defer()
        results.extend([pooled[0].status_code, batched[0].status_code])  # type: ignore[union-attr]

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(20)
    assert results == [200, 200, 200]
    assert [server.state.hits[t] for t in tags] == [2, 2, 2]


async def test_a_thousand_deferred_webhooks_none_lost_silently(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The seed's webhook failed 10% of the time, silently. Now each one is delivered
    (maybe after a retry) or visibly failed: the catch hook, the stats and the log."""
    t = tag()
    caplog.set_level(logging.WARNING, "afterward.http")
    failed: list[str] = []
    delivered: list[str] = []
    hooks = [
        http.post(
            f"{server.url}/flaky",
            params={"tag": t, "p": "0.1", "id": str(n)},
            json={"event": n},
            headers={"Idempotency-Key": f"event-{n}"},
        )
        for n in range(1000)
    ]
    async with afterward.scope():
        (
            http.batch({str(n): hook for n, hook in enumerate(hooks)})
            .retry(1, backoff=0.005)
            .progress(lambda b, key, r: delivered.append(key))
            .catch(lambda b, key, r: failed.append(key))
            .defer()
        )
    assert len(delivered) + len(failed) == 1000
    assert len(set(delivered) | set(failed)) == 1000
    assert failed, "with one retry at 10% failures, about 10 should fail twice"
    assert sorted(server.state.delivered[t]) == sorted(delivered)  # the server saw each one
    stats = afterward.stats()
    assert stats["http.retries_exhausted"] == len(failed)
    assert server.state.hits[t] == 1000 + stats["http.retries"]
    gave_up = [r for r in caplog.records if r.getMessage().startswith("gave up")]
    assert len(gave_up) == len(failed)


async def test_fake_sequences_answer_attempts_in_turn() -> None:
    routes: dict[str, http.FakeValue] = {
        "https://x.test/*": [
            http.response(status=503),
            http.response(status=503),
            http.response({"ok": True}),
        ],
        "https://down.test/*": [httpx.ConnectError("boom"), http.response("back")],
    }
    with http.fake(routes) as fake:
        response = await http.get("https://x.test/a").retry(3, backoff=0)
        assert response.json() == {"ok": True}
        fake.assert_sent_count(3)  # attempts, not requests
        assert (await http.get("https://down.test/").retry(1, backoff=0)).text == "back"
        fake.assert_sent_count(5)
    assert afterward.stats()["http.retries"] == 3


async def test_an_exhausted_fake_sequence_raises_and_is_not_retried() -> None:
    with http.fake({"https://x.test/*": [http.response(status=503)] * 2}) as fake:
        results = await http.pool([http.get("https://x.test/")], retry=http.Retry(5, backoff=0))
    assert isinstance(results[0], StrayRequestError)
    fake.assert_sent_count(3)  # two 503s retried; the third attempt found the list empty
    assert afterward.stats()["http.retries"] == 2


async def test_an_exception_in_a_fake_sequence_is_a_transport_error() -> None:
    with http.fake({"https://x.test/*": [httpx.ConnectError("boom")] * 3}) as fake:
        with pytest.raises(httpx.ConnectError, match="boom"):
            await http.get("https://x.test/").retry(2, backoff=0)
    fake.assert_sent_count(3)


@pytest.mark.parametrize("bad", [-1, True, "3", 1.5, object()])
async def test_bad_retry_values_raise_before_anything_is_sent(bad: object) -> None:
    with http.fake() as fake:
        request = http.get("https://x.test/")
        with pytest.raises(ConfigError, match="retry"):
            await http.pool([request], retry=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="retry"):
            http.pool_sync([request], retry=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="retry"):
            http.batch([request], retry=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="retry"):
            http.configure(retry=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            http.batch([request]).retry(bad)  # type: ignore[arg-type]
    fake.assert_sent_count(0)


async def test_cancelling_a_pool_stops_its_waiting_and_paused_requests(server: Server) -> None:
    t = tag()
    http.configure(max_per_host=1)  # one request in flight, the others paused at the gate
    requests = [
        http.get(f"{server.url}/fail/9/503", params={"tag": t, "after": "30"}) for _ in range(4)
    ]
    running = asyncio.create_task(http.pool(requests, retry=1, concurrency=2))
    deadline = time.monotonic() + 10
    while server.state.hits[t] < 2:  # two first attempts answered: one sleeps off 30 s
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    left = [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__ == "_Run._work"  # type: ignore[union-attr]
    ]
    assert left == []
    assert _hosts._gates.get(asyncio.get_running_loop()) == {}
