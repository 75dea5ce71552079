"""Durable requests: ``request.dispatch()`` through the work queue, against a real server."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from afterward import DispatchError, RequestFailed, correlate, http, scope
from afterward.events import EventBus, FailedJob
from afterward.http._durable import EXCERPT_CHARS, _excerpt
from afterward.integrations import sqlalchemy as afterward_sqla
from afterward.jobs import unregister_connection
from tests.events.backends import BackendFactory, sqlite
from tests.events.distributed import redis_bus_url
from tests.events.procs import spawn
from tests.http.conftest import Server, tag
from tests.support import free_port, wait_for

#: The work queues other processes reach (Kafka's backend has none).
QUEUES = [sqlite, pytest.param(redis_bus_url, marks=pytest.mark.redis)]


@pytest.fixture(params=QUEUES, ids=["sqlite", "redis"])
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    factory: BackendFactory = request.param
    return factory(tmp_path)


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[EventBus]:
    bus = EventBus(bus_url)
    bus.use_for_jobs("default")
    yield bus
    unregister_connection("queue")
    await bus.aclose()


async def _work(bus: EventBus) -> None:
    """Run the queue's jobs in this process until nothing is ready, delayed or running."""
    await bus.worker("default", concurrency=4).run(stop_when_idle=True)


def _fail_url(server: Server, t: str, failures: int, code: int, **query: Any) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"tag": t, **query}.items())
    return f"{server.url}/fail/{failures}/{code}?{params}"


def _only_failed(bus: EventBus) -> FailedJob:
    (failed,) = bus.failed_jobs("default")
    return failed


async def test_a_worker_delivers_a_dispatched_request(server: Server, bus: EventBus) -> None:
    t = tag()
    with correlate("order-7-checkout"):
        payload = http.post(_fail_url(server, t, 0, 200), json={"order_id": 7}).dispatch()
    assert server.state.hits[t] == 0  # nothing sent by the dispatching process
    await _work(bus)
    assert server.state.hits[t] == 1
    (headers,) = server.state.headers[t]
    assert headers["x-correlation-id"] == "order-7-checkout"
    assert headers["idempotency-key"] == payload.id  # the job ID, stable across retries
    assert headers["content-type"] == "application/json"
    assert json.loads(server.state.bodies[t][0]) == {"order_id": 7}
    assert bus.failed_jobs() == []
    assert await bus.queue_stats() == {}


async def test_bytes_and_form_bodies_round_trip_exactly(server: Server, bus: EventBus) -> None:
    raw, form = tag(), tag()
    blob = bytes(range(256)) * 4 + b"\x00\xff\r\n"
    headers = {"Content-Type": "application/octet-stream", "Idempotency-Key": "mine"}
    http.put(_fail_url(server, raw, 0, 200), content=blob, headers=headers).dispatch()
    http.post(_fail_url(server, form, 0, 200), data={"a": "1 2", "b": "é"}).dispatch()
    await _work(bus)
    assert server.state.bodies[raw] == [blob]
    (sent,) = server.state.headers[raw]
    assert (sent["content-type"], sent["idempotency-key"]) == ("application/octet-stream", "mine")
    assert server.state.bodies[form] == [b"a=1+2&b=%C3%A9"]
    assert server.state.headers[form][0]["content-type"] == "application/x-www-form-urlencoded"


async def test_the_request_is_frozen_with_this_process_settings(
    server: Server, bus: EventBus
) -> None:
    t = tag()
    http.configure(base_url=server.url, headers={"X-App": "shop", "X-Both": "default"})
    http.patch("fail/0/200", params={"tag": t}, headers={"X-Both": "request"}).dispatch()
    http.configure(base_url=None, headers=None)  # a worker process never configured them
    await _work(bus)
    (sent,) = server.state.headers[t]
    assert (sent["x-app"], sent["x-both"]) == ("shop", "request")


async def test_a_server_failing_twice_then_succeeding(server: Server, bus: EventBus) -> None:
    t = tag()
    http.post(_fail_url(server, t, 2, 503), json={"n": 1}).dispatch(tries=3, backoff=0)
    await _work(bus)
    assert server.state.hits[t] == 3
    ids = {h["idempotency-key"] for h in server.state.headers[t]}
    assert len(ids) == 1  # every attempt carries the same key
    assert bus.failed_jobs() == []


async def test_out_of_tries_the_failed_job_shows_the_last_status(
    server: Server, bus: EventBus
) -> None:
    t = tag()
    http.delete(_fail_url(server, t, 5, 502)).dispatch(tries=2, backoff=(0, 0))
    await _work(bus)
    assert server.state.hits[t] == 2
    failed = _only_failed(bus)
    assert failed.attempts == 2
    assert (
        failed.error
        == f"RequestFailed: DELETE {_fail_url(server, t, 5, 502)} answered 502: not yet"
    )


async def test_429_waits_what_retry_after_asks_not_the_backoff(
    server: Server, bus: EventBus
) -> None:
    t = tag()
    # A 30 s backoff would outlast the test: the 1 s Retry-After replaces it.
    http.post(_fail_url(server, t, 1, 429, after=1), json={}).dispatch(tries=2, backoff=30)
    started = time.monotonic()
    await _work(bus)
    assert time.monotonic() - started < 10
    first, second = server.state.arrivals[t]
    assert second - first >= 0.95
    assert bus.failed_jobs() == []


async def test_a_400_fails_at_once_with_its_status_and_body(server: Server, bus: EventBus) -> None:
    t = tag()
    url = _fail_url(server, t, 5, 400)
    payload = http.post(url, json={"bad": True}).dispatch(tries=5, backoff=0)
    await _work(bus)
    assert server.state.hits[t] == 1  # not retried
    failed = _only_failed(bus)
    assert (failed.job_id, failed.attempts) == (payload.id, 1)
    assert failed.error == f"RequestFailed: POST {url} answered 400: not yet"
    assert "RequestFailed" in failed.traceback


async def test_a_failed_request_retried_from_failed_jobs_is_delivered(
    server: Server, bus: EventBus
) -> None:
    t = tag()
    http.post(_fail_url(server, t, 1, 409), content=b"\x01\x02").dispatch(tries=1)
    await _work(bus)
    await bus.retry_failed_job(_only_failed(bus).id)
    await _work(bus)
    assert server.state.hits[t] == 2
    assert server.state.bodies[t] == [b"\x01\x02"] * 2
    assert bus.failed_jobs() == []


def test_a_long_body_is_cut_to_an_excerpt() -> None:
    response = httpx.Response(500, content="é".encode() * 2000)
    assert _excerpt(response) == "é" * EXCERPT_CHARS + "..."
    assert _excerpt(httpx.Response(500, content=b"\xffshort")) == "\ufffdshort"


async def test_transport_errors_are_retried_then_fail_visibly(bus: EventBus) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    http.get(url).dispatch(tries=2, backoff=0)
    await _work(bus)
    failed = _only_failed(bus)
    assert failed.attempts == 2
    assert failed.error.startswith(f"RequestFailed: GET {url} failed: ConnectError")


async def test_the_policy_holds_on_in_process_connections(server: Server) -> None:
    hard, soft = tag(), tag()
    with pytest.raises(RequestFailed) as caught:
        http.post(_fail_url(server, hard, 5, 404)).dispatch(tries=3, backoff=0, queue="sync")
    assert (caught.value.status, caught.value.excerpt, caught.value.retryable) == (
        404,
        "not yet",
        False,
    )
    async with scope():
        http.post(_fail_url(server, soft, 1, 500)).dispatch(tries=3, backoff=0, queue="deferred")
    deadline = time.monotonic() + 10  # the retry runs in a scope of its own, on a timer
    while server.state.hits[soft] < 2:
        assert time.monotonic() < deadline, "the deferred retry never ran"
        await asyncio.sleep(0.01)
    assert server.state.hits[hard] == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tries": 0}, "tries must be an int >= 1"),
        ({"tries": "3"}, "tries must be an int >= 1"),
        ({"tries": True}, "tries must be an int >= 1"),
        ({"backoff": -1}, "backoff"),
        ({"backoff": (1, -2)}, "backoff"),
        ({"queue": "nowhere"}, "unknown job connection 'nowhere'"),
    ],
)
async def test_bad_policy_enqueues_nothing(
    server: Server, bus: EventBus, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(DispatchError, match=message):
        http.post(f"{server.url}/echo", json={}).dispatch(**arguments)
    assert await bus.queue_stats() == {}


def _stream() -> Iterator[bytes]:
    yield b"chunk"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (http.post("http://h.test/", json={"at": object()}), "must be JSON-serializable"),
        (http.post("http://h.test/", json={"x": float("nan")}), "must be JSON-serializable"),
        (http.post("http://h.test/", content=_stream()), "content= must be bytes or str"),
        (http.post("http://h.test/", data=b"raw"), "data= must be a mapping"),
        (http.post("http://h.test/", json={}, content=b"x"), "one body"),
        (http.get("http://h.test/", auth=("u", "p")), "cannot store auth"),
        (http.get("http://h.test/", timeout=-1), "timeout must be seconds > 0"),
        (http.get("/relative"), "needs an absolute URL"),
        (http.get("http://h.test/").retry(2), "drop .retry()"),
    ],
)
async def test_bad_requests_enqueue_nothing(
    bus: EventBus, request_: http.PendingRequest, message: str
) -> None:
    with pytest.raises(DispatchError, match=message):
        request_.dispatch()
    assert await bus.queue_stats() == {}


async def test_inside_a_transaction_it_is_enqueued_only_on_commit(
    server: Server, bus: EventBus, tmp_path: Path
) -> None:
    afterward_sqla.install()
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
    rolled_back, committed = tag(), tag()
    try:
        with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
            session.execute(text("INSERT INTO orders VALUES (1)"))
            http.post(_fail_url(server, rolled_back, 0, 200), json={}).dispatch()
            raise RuntimeError("payment declined")
        with Session(engine) as session, session.begin():
            session.execute(text("INSERT INTO orders VALUES (2)"))
            http.post(_fail_url(server, committed, 0, 200), json={"order": 2}).dispatch()
            assert await bus.queue_stats() == {}  # in the outbox until the commit
        wait_for(lambda: bus.queue_stats_sync().get("default"), timeout=2.0)
        await _work(bus)
    finally:
        engine.dispose()
    assert (server.state.hits[rolled_back], server.state.hits[committed]) == (0, 1)


_DISPATCHER = """
import sys, time
from afterward import correlate, http
from afterward.events import EventBus
bus_url, ok, flaky, flag = sys.argv[1:]
EventBus(bus_url).use_for_jobs("default")
with correlate("cid-of-the-dead"):
    for n in range(20):
        http.post(ok, json={"n": n}).dispatch(tries=3, backoff=0)
    http.post(flaky, content=b"\\x00retried").dispatch(tries=3, backoff=0.1)
open(flag, "w").close()
time.sleep(120)  # killed here, long before this ends
"""


def test_delivered_by_a_worker_after_the_dispatcher_was_killed(
    server: Server, bus_url: str, tmp_path: Path
) -> None:
    ok, flaky, flag = tag(), tag(), tmp_path / "dispatched"
    dispatcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _DISPATCHER,
            bus_url,
            _fail_url(server, ok, 0, 200),
            _fail_url(server, flaky, 1, 503),
            str(flag),
        ],
        cwd=Path(__file__).parents[2],
    )
    try:
        wait_for(flag.exists, timeout=30)
    finally:
        dispatcher.send_signal(signal.SIGKILL)
        assert dispatcher.wait(timeout=10) == -signal.SIGKILL
    assert server.state.hits[ok] == 0
    worker = spawn("work", bus_url, "default", 4, 5.0)
    try:
        wait_for(lambda: server.state.hits[ok] == 20 and server.state.hits[flaky] == 2, timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert sorted(json.loads(body)["n"] for body in server.state.bodies[ok]) == list(range(20))
    assert server.state.bodies[flaky] == [b"\x00retried"] * 2
    assert {h["x-correlation-id"] for h in server.state.headers[ok]} == {"cid-of-the-dead"}
    assert EventBus(bus_url).failed_jobs() == []
