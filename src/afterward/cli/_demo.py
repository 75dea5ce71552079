"""``afterward demo``: a small shop whose checkout answers first and works afterward."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import click

__all__ = ["run_demo"]

WORK_SECONDS = 0.2  # each of the four after-response tasks


def build_app() -> object:
    """The demo ASGI app: ``POST /checkout`` defers four slow calls."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from afterward import correlation_id, defer
    from afterward.integrations.asgi import DeferMiddleware

    async def slow_call(service: str, started: float, log: bool) -> None:
        await asyncio.sleep(WORK_SECONDS)
        if log and service == "crm":
            click.echo(
                f"  deferred work for {correlation_id()} finished "
                f"{(time.perf_counter() - started) * 1000:7.1f} ms after the request began"
            )

    async def checkout(request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = await request.json() if await request.body() else {}
        for service in ("inventory", "warehouse", "analytics", "crm"):
            defer(slow_call, service, started, request.app.state.verbose, name=service)
        order = {"order": 1, "sku": body.get("sku", "A1"), "correlation_id": correlation_id()}
        if request.app.state.verbose:
            click.echo(
                f"checkout {correlation_id()}: answered in "
                f"{(time.perf_counter() - started) * 1000:6.1f} ms; "
                f"4 x {WORK_SECONDS * 1000:.0f} ms of work deferred"
            )
        return JSONResponse(order)

    app = Starlette(routes=[Route("/checkout", checkout, methods=["POST"])])
    app.state.verbose = True
    return DeferMiddleware(app)


def _load(url: str, count: int) -> list[float]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    timings = []
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    for _ in range(count):
        started = time.perf_counter()
        connection.request("POST", "/checkout", body=b'{"sku": "A1"}')
        connection.getresponse().read()
        timings.append((time.perf_counter() - started) * 1000)
    connection.close()
    return timings


def run_demo(host: str, port: int, requests: int) -> None:
    """Serve the demo; with ``requests`` > 0, load it, print the figures and stop."""
    import uvicorn

    config = uvicorn.Config(build_app(), host=host, port=port, log_level="warning")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    if not requests:
        click.echo(f"afterward demo on http://{host}:{port}  (POST /checkout)")
        click.echo(f'  try: curl -X POST http://{host}:{port}/checkout -d \'{{"sku": "A1"}}\'')
        server.run()
        return
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    timings = _load(f"http://{host}:{port}", requests)
    server.should_exit = True
    thread.join()
    click.echo(
        f"{requests} checkouts: response p50 {statistics.median(timings):.1f} ms, "
        f"max {max(timings):.1f} ms; inline the same work would take "
        f"{4 * WORK_SECONDS * 1000:.0f} ms each"
    )
