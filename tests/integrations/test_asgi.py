"""The ASGI middleware under a real uvicorn on loopback (Starlette and FastAPI)."""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import afterward
from afterward import correlation_id, defer
from afterward.integrations.asgi import DeferMiddleware
from tests.support import serve_asgi, wait_for


def _connect(base_url: str) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)


def _get(
    base_url: str, path: str, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    connection = _connect(base_url)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _app(*routes: Route) -> DeferMiddleware:
    return DeferMiddleware(Starlette(routes=list(routes)))


def test_body_arrives_before_callbacks_and_keepalive_is_not_held() -> None:
    body_received = threading.Event()
    second_answered = threading.Event()
    seen: dict[str, object] = {}

    def after_first() -> None:
        seen["body_received_at_start"] = body_received.wait(5)
        seen["second_answered_meanwhile"] = second_answered.wait(5)

    async def first(request: Request) -> Response:
        defer(after_first)
        return PlainTextResponse("x" * 100_000)

    async def second(request: Request) -> Response:
        return PlainTextResponse("second")

    with serve_asgi(_app(Route("/first", first), Route("/second", second))) as url:
        connection = _connect(url)
        connection.request("GET", "/first")
        response = connection.getresponse()
        assert len(response.read()) == 100_000  # complete body while the callback waits
        body_received.set()
        # Same keep-alive connection: answered while the first callback is still blocked.
        connection.request("GET", "/second")
        again = connection.getresponse()
        assert again.read() == b"second"
        second_answered.set()
        connection.close()
        wait_for(lambda: "second_answered_meanwhile" in seen)
    assert seen == {"body_received_at_start": True, "second_answered_meanwhile": True}


def test_sync_callbacks_run_off_the_event_loop_thread() -> None:
    threads: dict[str, str] = {}

    def sync_work() -> None:
        threads["callback"] = threading.current_thread().name

    async def endpoint(request: Request) -> Response:
        threads["endpoint"] = threading.current_thread().name
        defer(sync_work)
        return PlainTextResponse("ok")

    with serve_asgi(_app(Route("/", endpoint))) as url:
        _get(url, "/")
        wait_for(lambda: "callback" in threads)
    assert threads["callback"] != threads["endpoint"]
    assert threads["callback"].startswith("afterward-defer")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/ok", ["normal", "always"]), ("/bad", ["always"]), ("/boom", ["always"])],
)
def test_failed_responses_run_only_always_callbacks(path: str, expected: list[str]) -> None:
    ran: list[str] = []
    done = threading.Event()

    def register() -> None:
        defer(ran.append, "normal")
        defer(ran.append, "always", always=True)
        defer(done.set, always=True)

    async def ok(request: Request) -> Response:
        register()
        return PlainTextResponse("fine")

    async def bad(request: Request) -> Response:
        register()
        return PlainTextResponse("nope", status_code=422)

    async def boom(request: Request) -> Response:
        register()
        raise RuntimeError("endpoint failed")

    app = _app(Route("/ok", ok), Route("/bad", bad), Route("/boom", boom))
    with serve_asgi(app) as url:
        _get(url, path)
        assert done.wait(5)
    assert ran == expected


def test_correlation_id_in_out_and_inside_callbacks() -> None:
    seen: list[tuple[str | None, str | None]] = []
    done = threading.Event()

    async def endpoint(request: Request) -> Response:
        async def later() -> None:
            seen.append(("callback", correlation_id()))
            done.set()

        defer(later)
        return JSONResponse({"cid": correlation_id()})

    with serve_asgi(_app(Route("/", endpoint))) as url:
        given = _get(url, "/", {"X-Correlation-ID": "abc-123"})
        assert given.headers["X-Correlation-ID"] == "abc-123"
        assert done.wait(5)
        from_request_id = _get(url, "/", {"X-Request-ID": "req-9"})
        assert from_request_id.headers["X-Correlation-ID"] == "req-9"
        fresh = _get(url, "/")
        generated = fresh.headers["X-Correlation-ID"]
        assert len(generated) == 36 and generated not in ("abc-123", "req-9")
        injected = _get(url, "/", {"X-Correlation-ID": "bad id with spaces"})
        assert " " not in injected.headers["X-Correlation-ID"]
    assert seen[0] == ("callback", "abc-123")


def test_streaming_response_is_untouched_and_callbacks_follow_it() -> None:
    order: list[str] = []
    done = threading.Event()

    async def endpoint(request: Request) -> Response:
        async def chunks():  # type: ignore[no-untyped-def]
            for i in range(3):
                order.append(f"chunk{i}")
                yield f"{i}".encode()

        defer(lambda: (order.append("callback"), done.set()))
        return StreamingResponse(chunks())

    with serve_asgi(_app(Route("/", endpoint))) as url:
        connection = _connect(url)
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"012"
        connection.close()
        assert done.wait(5)
    assert order == ["chunk0", "chunk1", "chunk2", "callback"]


def test_fastapi_add_middleware() -> None:
    ran: list[str | None] = []
    done = threading.Event()
    api = FastAPI()
    api.add_middleware(DeferMiddleware)

    @api.post("/orders")
    def create_order() -> dict[str, str]:  # a sync endpoint: FastAPI runs it in a thread
        defer(lambda: (ran.append(correlation_id()), done.set()), name="receipt")
        return {"status": "created"}

    with serve_asgi(api) as url:
        connection = _connect(url)
        connection.request("POST", "/orders", headers={"X-Correlation-ID": "fa-1"})
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b'{"status":"created"}'
        connection.close()
        assert done.wait(5)
    assert ran == ["fa-1"]


def test_lifespan_shutdown_drains_deferred_work() -> None:
    finished = threading.Event()
    release = threading.Event()

    def slow() -> None:
        release.wait(10)
        finished.set()

    async def endpoint(request: Request) -> Response:
        defer(slow)
        return PlainTextResponse("ok")

    with _running(_app(Route("/", endpoint))) as (url, server, thread):
        _get(url, "/")
        server.should_exit = True
        thread.join(0.5)
        assert thread.is_alive(), "the server stopped without waiting for deferred work"
        release.set()
        thread.join(15)
        assert not thread.is_alive()
        assert finished.is_set()


@contextlib.contextmanager
def _running(app: DeferMiddleware) -> Iterator[tuple[str, uvicorn.Server, threading.Thread]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server, thread
    finally:
        server.should_exit = True
        thread.join(15)


def test_shutdown_grace_period_logs_lost_work(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    async def endpoint(request: Request) -> Response:
        defer(release.wait, 10, name="stuck-report")
        return PlainTextResponse("ok")

    app = DeferMiddleware(Starlette(routes=[Route("/", endpoint)]), grace_period=0.2)
    try:
        with (
            caplog.at_level(logging.ERROR, logger="afterward.defer"),
            _running(app) as (
                url,
                _,
                _,
            ),
        ):
            _get(url, "/")
        assert afterward.stats()["defer.lost"] == 1
        [record] = [r for r in caplog.records if "lost" in r.getMessage()]
        assert "stuck-report" in record.getMessage()
        assert record.correlation_id in record.getMessage()  # type: ignore[attr-defined]
    finally:
        release.set()
        afterward.drain_sync(5)


@pytest.mark.parametrize("grace", [-1, "10"])
def test_bad_grace_period_is_refused(grace: object) -> None:
    with pytest.raises(afterward.ConfigError, match="grace_period"):
        DeferMiddleware(Starlette(), grace_period=grace)  # type: ignore[arg-type]
