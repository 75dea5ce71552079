"""Serving the demo shop for ``afterward demo``: uvicorn on 127.0.0.1:8000, the URLs,
and the ``--load`` mode."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from afterward.cli._bus import make_bus
from afterward.cli._output import progress, run
from afterward.cli._serve import bind, url_of
from afterward.demo import Shop, fire, render_table

__all__ = ["run_demo"]


def _bus(url: str | None, db: str | None) -> tuple[Any, str]:
    """The demo's bus: ``url``, else the SQLite file ``db``, else a new temp file."""
    if url is None:
        path = Path(db) if db else Path(tempfile.mkdtemp(prefix="afterward-demo-")) / "shop.db"
        url = f"sqlite:///{path.resolve()}"
    return make_bus(url), url


async def _check_reachable(url: str) -> None:
    """Connect once to ``url`` with a bus of our own, before serving.

    The shop opens its bus in the app's lifespan, where an unreachable server would
    end as uvicorn's traceback; here it is the CLI's one-line error.
    """
    async with make_bus(url):
        pass


def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    bus_url: str | None = None,
    db: str | None = None,
    fail_rate: float = 0.2,
    seed: int | None = None,
    token: str | None = None,
    load: int = 0,
    concurrency: int = 10,
) -> None:
    """Serve the shop until Ctrl-C; with ``load`` > 0, measure it, print the table, stop.

    The bus is ``bus_url`` when given, else the SQLite file ``db``, else a new temp file.
    """
    import uvicorn  # the demo extra; imported when the demo runs

    sock = bind(host, port)
    try:
        bus, url = _bus(bus_url, db)
        if not url.startswith("memory:"):  # a memory bus is private to its object
            run(_check_reachable(url))
    except BaseException:
        sock.close()
        raise
    shop = Shop(bus, fail_rate=fail_rate, seed=seed, token=token, echo=None if load else click.echo)
    server = uvicorn.Server(uvicorn.Config(shop.app, log_level="warning"))
    base = url_of(sock, host)
    if not load:
        _announce(base, url, shop)
        server.run(sockets=[sock])
        return
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:  # uvicorn offers no event to wait on from another thread
        if not thread.is_alive() or time.monotonic() > deadline:
            raise click.ClickException(f"the demo could not start on {host}:{port}")
        time.sleep(0.01)
    try:
        _measure(base, load, concurrency, shop)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _announce(base: str, url: str, shop: Shop) -> None:
    click.echo(f"afterward demo shop on {base}/")
    click.echo(f"  dashboard: {base}/afterward/?token={shop.dashboard.token}")
    click.echo(f"  bus:       {url}")
    body = '{"sku": "A1", "qty": 1}'
    click.echo(f"  checkout:  curl -s -X POST {base}/checkout -d '{body}'")
    click.echo("  one line per checkout below; Ctrl-C to stop")


def _measure(base: str, count: int, concurrency: int, shop: Shop) -> None:
    variants = {
        "with afterward (POST /checkout)": "/checkout",
        "same work inline (POST /checkout-inline)": "/checkout-inline",
    }
    warmup = min(count, 10)  # connections, imports, the HTTP client: not what we measure
    for path in variants.values():
        fire(base, path, warmup, concurrency, lambda: None)
    _wait_for_deferred(shop, warmup)
    with shop.deferred_done:
        shop.deferred_ms.clear()
    results = {}
    for name, path in variants.items():
        with progress(path, count) as tick:
            results[name] = fire(base, path, count, concurrency, tick)
    _wait_for_deferred(shop, count)  # the last batches finish after their responses
    Console().print(render_table(results, shop.deferred_ms[:], concurrency))


def _wait_for_deferred(shop: Shop, count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` deferred batches have finished (they run on the server's loop)."""
    with shop.deferred_done:
        shop.deferred_done.wait_for(lambda: len(shop.deferred_ms) >= count, timeout)
