"""The benchmarks' loopback HTTP server, run in its own process.

``python -m bench._http_server`` prints the port it listens on, then serves
``GET /?ms=N`` (answers ``ok`` after N milliseconds) and ``POST /?ms=N&fail=P`` (the
same, but a 503 for a share P of requests drawn from a seeded generator) until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
from collections.abc import Iterator

from aiohttp import web

__all__ = ["serve"]


_failures = random.Random(20261123)


async def _delay(request: web.Request) -> web.Response:
    ms = float(request.query.get("ms", "0"))
    if ms:
        await asyncio.sleep(ms / 1000)
    fail = float(request.query.get("fail", "0"))
    if fail and _failures.random() < fail:
        return web.Response(status=503, text="try again")
    return web.Response(text="ok")


async def _main() -> None:
    app = web.Application()
    app.router.add_get("/", _delay)
    app.router.add_post("/", _delay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


@contextlib.contextmanager
def serve() -> Iterator[str]:
    """Start the server in a child process; yield its base URL; stop it."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench._http_server"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        child.terminate()
        child.wait(10)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
