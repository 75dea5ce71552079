"""An app that dispatches a background job per request (served by a uvicorn subprocess)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from afterward.integrations.asgi import DeferMiddleware
from tests.jobs.sample import WaitThenWrite


async def start(request: Request) -> Response:
    WaitThenWrite(folder=request.query_params["folder"]).dispatch(connection="background")
    return PlainTextResponse("started")


app = DeferMiddleware(Starlette(routes=[Route("/start", start)]))
