"""batch.defer(): after the response in every kind of scope, with its hooks."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import afterward
from afterward import NoScopeError, http
from afterward.integrations.asgi import DeferMiddleware
from afterward.integrations.wsgi import DeferMiddleware as WSGIDeferMiddleware
from tests.http.conftest import Server
from tests.support import serve_asgi, serve_wsgi, wait_for


def tag() -> str:
    return uuid.uuid4().hex[:12]


def test_defer_outside_a_scope_raises_no_scope_error() -> None:
    with pytest.raises(NoScopeError, match=r"afterward\.scope"):
        http.batch([http.get("https://x.test/")]).defer()


async def test_deferred_batches_run_when_an_async_scope_exits(server: Server) -> None:
    t = tag()
    finals: list[tuple[str, Any]] = []
    async with afterward.scope("cid-async") as scope:
        for name in ("first", "second"):  # two batches: neither replaces the other
            http.batch([http.get(f"{server.url}/echo", params={"tag": t})]).finally_(
                lambda b, results, name=name: finals.append((name, results))
            ).defer()
        assert finals == []  # nothing sent before the scope ends
        assert [c.name for c in scope.callbacks] == ["http.batch", "http.batch"]
    assert [name for name, _ in finals] == ["first", "second"]
    assert all(r[0].status_code == 200 for _, r in finals)
    assert server.state.correlation_ids[t] == ["cid-async", "cid-async"]


def test_deferred_batch_in_a_sync_scope_on_a_plain_thread(server: Server) -> None:
    t = tag()
    seen: list[str] = []

    def work() -> None:
        with afterward.scope():
            http.batch({"x": http.get(f"{server.url}/echo", params={"tag": t})}).progress(
                lambda b, key, response: seen.append(key)
            ).defer()
            assert seen == []
        assert seen == ["x"]  # leaving the block waited for it

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(20)
    assert seen == ["x"]


def test_deferred_batch_runs_after_the_asgi_response(server: Server) -> None:
    t = tag()
    finals: list[dict[str, Any]] = []
    server.state.gate.clear()

    async def checkout(request: Request) -> JSONResponse:
        http.batch(
            {
                "inventory": http.get(f"{server.url}/gate", params={"tag": t}),
                "crm": http.post(f"{server.url}/status/500", params={"tag": t}),
            }
        ).finally_(lambda b, results: finals.append(results)).defer()
        return JSONResponse({"order": "ORD-1"})

    app = DeferMiddleware(Starlette(routes=[Route("/checkout", checkout, methods=["POST"])]))
    with serve_asgi(app) as shop:
        # /gate answers only once the test opens it: had the batch run before the
        # response, this request would never get one.
        response = httpx.post(f"{shop}/checkout", timeout=10)
        assert response.json() == {"order": "ORD-1"}
        assert finals == []
        wait_for(lambda: server.state.correlation_ids[t])  # the batch has started
        server.state.gate.set()
        wait_for(lambda: finals, timeout=15)
    results = finals[0]
    assert results["inventory"].status_code == 200
    assert results["crm"].status_code == 500
    cid = response.headers["x-correlation-id"]
    assert server.state.correlation_ids[t] == [cid, cid]


def test_a_failed_response_skips_the_batch_unless_always(server: Server) -> None:
    t = tag()
    ran: list[str] = []

    async def fail(request: Request) -> JSONResponse:
        for always in (False, True):
            http.batch([http.get(f"{server.url}/echo", params={"tag": t})]).finally_(
                lambda b, r, always=always: ran.append(f"always={always}")
            ).defer(always=always)
        return JSONResponse({"error": "nope"}, status_code=422)

    app = DeferMiddleware(Starlette(routes=[Route("/fail", fail)]))
    with serve_asgi(app) as base:
        assert httpx.get(f"{base}/fail", timeout=10).status_code == 422
        wait_for(lambda: ran)
    assert ran == ["always=True"]
    assert afterward.stats()["defer.skipped"] == 1


def test_deferred_batch_runs_after_a_wsgi_response(server: Server) -> None:
    t = tag()
    finals: list[Any] = []

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        http.batch([http.get(f"{server.url}/echo", params={"tag": t})]).then(
            lambda b, results: finals.append(results)
        ).defer()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serve_wsgi(WSGIDeferMiddleware(wsgi_app)) as base:
        response = httpx.get(base, timeout=10)
        assert response.text == "ok"
        wait_for(lambda: finals)
    assert finals[0][0].status_code == 200
    assert server.state.correlation_ids[t] == [response.headers["x-correlation-id"]]


def test_a_deferred_batch_is_drained_at_shutdown(server: Server) -> None:
    t = tag()
    finals: list[Any] = []

    async def endpoint(request: Request) -> JSONResponse:
        slow = http.get(f"{server.url}/delay/300", params={"tag": t})
        http.batch([slow]).finally_(lambda b, results: finals.append(results)).defer()
        return JSONResponse({})

    app = DeferMiddleware(Starlette(routes=[Route("/", endpoint)]))
    with serve_asgi(app) as base:
        assert httpx.get(base, timeout=10).status_code == 200
        assert finals == []
    # Leaving serve_asgi shut the server down: lifespan shutdown drained the batch.
    assert finals and finals[0][0].status_code == 200
