"""A real uvicorn server for the HTTP tests, and a clean ``afterward.http`` per test."""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from afterward import http
from afterward.http import _client
from tests.support import serve_asgi


@dataclass
class ServerState:
    """What the server saw, per ``tag`` query parameter (tests use unique tags)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    inflight: Counter[str] = field(default_factory=Counter)
    max_inflight: Counter[str] = field(default_factory=Counter)
    ports: defaultdict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    correlation_ids: defaultdict[str, list[str | None]] = field(
        default_factory=lambda: defaultdict(list)
    )
    gate: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    #: requests per tag, the wall-clock time each arrived, Retry-After values sent
    hits: Counter[str] = field(default_factory=Counter)
    arrivals: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    retry_after: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    #: /flaky: the ids answered 200, per tag; failures drawn from a seeded generator
    delivered: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rng: random.Random = field(default_factory=lambda: random.Random(1234))
    #: /fail: each request's raw body and headers, per tag
    bodies: defaultdict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    headers: defaultdict[str, list[dict[str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )


@dataclass
class Server:
    url: str
    state: ServerState


def tag() -> str:
    """A fresh tag, telling one test's requests apart in the shared server's state."""
    return uuid.uuid4().hex[:12]


def delayed(server: Server, ms: int, t: str) -> http.PendingRequest:
    """A GET the server answers after ``ms`` milliseconds, counted in flight under ``t``."""
    return http.get(f"{server.url}/delay/{ms}", params={"tag": t})


def _app(state: ServerState) -> Starlette:
    def seen(request: Request) -> str:
        tag = request.query_params.get("tag", "")
        with state.lock:
            assert request.client is not None
            state.ports[tag].add(request.client.port)
            state.correlation_ids[tag].append(request.headers.get("x-correlation-id"))
            state.hits[tag] += 1
            state.arrivals[tag].append(time.time())
        return tag

    async def echo(request: Request) -> JSONResponse:
        seen(request)
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": (await request.body()).decode(),
            }
        )

    async def delay(request: Request) -> JSONResponse:
        tag = seen(request)
        with state.lock:
            state.inflight[tag] += 1
            state.max_inflight[tag] = max(state.max_inflight[tag], state.inflight[tag])
        try:
            await asyncio.sleep(int(request.path_params["ms"]) / 1000)
        finally:
            with state.lock:
                state.inflight[tag] -= 1
        return JSONResponse({"slept": int(request.path_params["ms"])})

    async def status(request: Request) -> Response:
        seen(request)
        return Response(b"status", status_code=int(request.path_params["code"]))

    async def hang(request: Request) -> Response:
        await asyncio.to_thread(state.release.wait, 10)  # past any client timeout here
        return Response(b"too late")

    async def gate(request: Request) -> Response:
        seen(request)
        opened = await asyncio.to_thread(state.gate.wait, 20)
        return Response(b"open" if opened else b"shut", status_code=200 if opened else 504)

    async def drop(scope: Any, receive: Any, send: Any) -> None:
        # Promise 1000 bytes, send 7, and return: uvicorn closes the connection.
        headers = [(b"content-length", b"1000")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            Route("/echo/{rest:path}", echo, methods=["GET", "POST"]),
            Route("/delay/{ms:int}", delay),
            Route("/status/{code:int}", status, methods=["GET", "POST"]),
            Route("/hang", hang),
            Route("/gate", gate),
            Mount("/drop", app=drop),
            *_retry_routes(state, seen),
        ]
    )


def _retry_routes(state: ServerState, seen: Callable[[Request], str]) -> list[Route]:
    async def fail(request: Request) -> Response:
        """The first ``n`` requests of a tag get ``code`` (and ``Retry-After`` when asked
        for: ``after=<seconds>`` or ``date_in=<seconds>`` for an HTTP date), then 200."""
        tag = seen(request)
        attempt = state.hits[tag]
        body = await request.body()
        with state.lock:
            state.bodies[tag].append(body)
            state.headers[tag].append(dict(request.headers))
        if attempt > int(request.path_params["n"]):
            return JSONResponse({"attempt": attempt})
        headers: dict[str, str] = {}
        params = request.query_params
        if "after" in params:
            headers["Retry-After"] = params["after"]
        elif "date_in" in params:
            # Whole seconds, as HTTP dates have: the wait is what is left until then.
            headers["Retry-After"] = email.utils.formatdate(
                int(time.time()) + int(params["date_in"]), usegmt=True
            )
        with state.lock:
            state.retry_after[tag].extend(headers.values())
        return Response(b"not yet", status_code=int(request.path_params["code"]), headers=headers)

    async def flaky(request: Request) -> Response:
        """503 for a share ``p`` of requests drawn at random (seeded), else 200."""
        tag = seen(request)
        with state.lock:
            failed = state.rng.random() < float(request.query_params["p"])
            if not failed:
                state.delivered[tag].append(request.query_params["id"])
        return Response(b"", status_code=503 if failed else 200)

    return [
        Route(
            "/fail/{n:int}/{code:int}",
            fail,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        ),
        Route("/flaky", flaky, methods=["POST"]),
    ]


@pytest.fixture(scope="package")
def server() -> Iterator[Server]:
    """One uvicorn for the whole package; tests tell their requests apart by ``tag``."""
    state = ServerState()
    with serve_asgi(_app(state), timeout_graceful_shutdown=2) as url:
        try:
            yield Server(url, state)
        finally:
            state.gate.set()
            state.release.set()


@pytest.fixture(scope="package")
def other_server(server: Server) -> Iterator[Server]:
    """A second host (another port), recording into the first server's state."""
    with serve_asgi(_app(server.state), timeout_graceful_shutdown=2) as url:
        yield Server(url, server.state)


@pytest.fixture(autouse=True)
def _default_http_settings() -> Iterator[None]:
    s = _client.settings
    saved = (s.base_url, s.timeout, s.headers, s.client, s.retry, s.max_per_host)
    yield
    s.base_url, s.timeout, s.headers, s.client, s.retry, s.max_per_host = saved
