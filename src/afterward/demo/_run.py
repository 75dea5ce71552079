"""Serving the demo: uvicorn on 127.0.0.1:8000, the URLs, and the ``--load`` mode."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from afterward.demo._shop import Shop

__all__ = ["run_demo"]


def _bus(db: str | None) -> tuple[Any, str]:
    from afterward.events import EventBus

    path = Path(db) if db else Path(tempfile.mkdtemp(prefix="afterward-demo-")) / "shop.db"
    url = f"sqlite:///{path.resolve()}"
    return EventBus(url), url


def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    db: str | None = None,
    fail_rate: float = 0.2,
    seed: int | None = None,
    token: str | None = None,
    load: int = 0,
    concurrency: int = 10,
) -> None:
    """Serve the shop until Ctrl-C; with ``load`` > 0, measure it, print the table, stop."""
    import uvicorn

    from afterward.cli._serve import bind, url_of

    sock = bind(host, port)
    bus, url = _bus(db)
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
    from rich.console import Console

    from afterward.cli._output import progress
    from afterward.demo._load import fire, render_table

    variants = {
        "with afterward (POST /checkout)": "/checkout",
        "same work inline (POST /checkout-inline)": "/checkout-inline",
    }
    warmup = min(count, 10)  # connections, imports, the HTTP client: not what we measure
    for path in variants.values():
        fire(base, path, warmup, concurrency, lambda: None)
    _wait_for_deferred(shop, warmup)
    shop.deferred_ms.clear()
    results = {}
    for name, path in variants.items():
        with progress(path, count) as tick:
            results[name] = fire(base, path, count, concurrency, tick)
    _wait_for_deferred(shop, count)  # the last batches finish after their responses
    Console().print(render_table(results, shop.deferred_ms[:], concurrency))


def _wait_for_deferred(shop: Shop, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(shop.deferred_ms) < count and time.monotonic() < deadline:
        time.sleep(0.05)  # deferred batches run on the server's loop; we only watch
