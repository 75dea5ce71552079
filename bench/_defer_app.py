"""The app the defer benchmark serves: the same endpoint four ways.

``/none`` does nothing, ``/inline`` awaits four 200 ms calls, ``/defer`` defers them
with afterward, ``/background`` hands them to Starlette's BackgroundTasks. Served by
uvicorn in its own process; ``bare`` (no middleware) and ``wrapped`` (DeferMiddleware)
apps for the throughput comparison.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.background import BackgroundTasks
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from afterward import defer
from afterward.integrations.asgi import DeferMiddleware

TASK_SECONDS = 0.2


async def slow_call() -> None:
    await asyncio.sleep(TASK_SECONDS)


async def none(request: Request) -> Response:
    return PlainTextResponse("ok")


async def inline(request: Request) -> Response:
    for _ in range(4):
        await slow_call()
    return PlainTextResponse("ok")


async def deferred(request: Request) -> Response:
    for _ in range(4):
        defer(slow_call)
    return PlainTextResponse("ok")


async def background(request: Request) -> Response:
    tasks = BackgroundTasks()
    for _ in range(4):
        tasks.add_task(slow_call)
    return PlainTextResponse("ok", background=tasks)


_routes = [
    Route("/none", none),
    Route("/inline", inline),
    Route("/defer", deferred),
    Route("/background", background),
]
bare = Starlette(routes=_routes)
wrapped = DeferMiddleware(Starlette(routes=_routes))


def _with_constant_header(app: Starlette) -> object:
    """The bare app plus a fixed ``X-Correlation-ID`` response header: isolates what the
    header itself costs the server (h11 validates and writes every header)."""
    header = (b"x-correlation-id", b"00000000-0000-4000-8000-000000000000")

    async def wrapper(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        async def send_with_header(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)  # type: ignore[operator]

        await app(scope, receive, send_with_header)  # type: ignore[arg-type]

    return wrapper


bare_with_header = _with_constant_header(Starlette(routes=_routes))
