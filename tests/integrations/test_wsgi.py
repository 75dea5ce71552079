"""The WSGI middleware: Flask under a real waitress server on loopback."""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

import pytest
from flask import Flask, Response, abort, stream_with_context

import afterward
from afterward import correlation_id, defer
from afterward.integrations.wsgi import DeferMiddleware
from tests.support import serve_wsgi, wait_for


def _request(
    base_url: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body, response.headers.get("X-Correlation-ID", "")


def _flask() -> Flask:
    app = Flask(__name__)
    app.wsgi_app = DeferMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def test_callbacks_run_after_the_response_without_holding_the_worker() -> None:
    app = _flask()
    body_received = threading.Event()
    second_answered = threading.Event()
    seen: dict[str, object] = {}

    @app.get("/first")
    def first() -> str:
        def after() -> None:
            seen["thread"] = threading.current_thread().name
            seen["body_first"] = body_received.wait(5)
            seen["second_meanwhile"] = second_answered.wait(5)

        defer(after)
        return "x" * 50_000

    @app.get("/second")
    def second() -> str:
        return "second"

    # One worker thread: if deferred work held it, /second could not be served.
    with serve_wsgi(app, threads=1) as url:
        status, body, _ = _request(url, "/first")
        assert status == 200 and len(body) == 50_000
        body_received.set()
        assert _request(url, "/second")[1] == b"second"
        second_answered.set()
        wait_for(lambda: "second_meanwhile" in seen)
    assert seen["body_first"] is True and seen["second_meanwhile"] is True
    assert str(seen["thread"]).startswith("afterward-defer")


@pytest.mark.parametrize(
    ("path", "expected"), [("/ok", ["normal", "always"]), ("/bad", ["always"])]
)
def test_status_gating(path: str, expected: list[str]) -> None:
    app = _flask()
    ran: list[str] = []
    done = threading.Event()

    def register() -> None:
        defer(ran.append, "normal")
        defer(ran.append, "always", always=True)
        defer(done.set, always=True)

    @app.get("/ok")
    def ok() -> str:
        register()
        return "ok"

    @app.get("/bad")
    def bad() -> str:
        register()
        abort(503)

    with serve_wsgi(app) as url:
        _request(url, path)
        assert done.wait(5)
    assert ran == expected


def test_exception_in_a_plain_wsgi_app_runs_only_always_callbacks() -> None:
    ran: list[str] = []
    done = threading.Event()

    def broken(environ: dict[str, object], start_response: object) -> list[bytes]:
        defer(ran.append, "normal")
        defer(lambda: (ran.append("always"), done.set()), always=True)
        raise RuntimeError("app failed")

    with serve_wsgi(DeferMiddleware(broken)) as url:
        status, _, _ = _request(url, "/")
        assert status == 500
        assert done.wait(5)
    assert ran == ["always"]


def test_correlation_ids_and_streamed_bodies() -> None:
    app = _flask()
    seen: list[tuple[str, str | None]] = []
    done = threading.Event()

    @app.get("/stream")
    def stream() -> Response:
        def chunks():  # type: ignore[no-untyped-def]
            yield "a"
            defer(lambda: (seen.append(("from-stream", correlation_id())), done.set()))
            yield "b"

        return Response(stream_with_context(chunks()))

    with serve_wsgi(app) as url:
        status, body, cid = _request(url, "/stream", {"X-Request-ID": "flask-7"})
        assert (status, body, cid) == (200, b"ab", "flask-7")
        assert done.wait(5)
    assert seen == [("from-stream", "flask-7")]
    wait_for(lambda: afterward.stats().get("defer.completed") == 1)  # counted as it returns
