"""``afterward demo --load N``: fire checkouts, then compare latencies in a table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Latencies", "fire", "percentile", "render_table"]

Latencies = dict[str, list[float]]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def fire(
    base_url: str, path: str, count: int, concurrency: int, tick: Callable[[], None]
) -> list[float]:
    """POST ``count`` checkouts to ``path``, ``concurrency`` at a time; milliseconds each."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    local = threading.local()
    body = json.dumps({"sku": "A1", "qty": 1}).encode()

    def one(_: int) -> float:
        connection = getattr(local, "connection", None)
        if connection is None:  # one keep-alive connection per thread, like a browser
            connection = local.connection = http.client.HTTPConnection(
                parts.hostname or "127.0.0.1", parts.port, timeout=30
            )
        started = time.perf_counter()
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        tick()
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def render_table(results: Latencies, deferred_ms: list[float], concurrency: int) -> Any:
    """A rich table: p50/p99/max response time per variant, and the deferred work's."""
    from rich.table import Table

    count = len(next(iter(results.values())))
    table = Table(
        title=f"{count} checkouts per variant, {concurrency} at a time (ms)",
        title_justify="left",
    )
    for column in ("", "p50", "p99", "max"):
        table.add_column(column, justify="right" if column else "left")
    for name, values in results.items():
        table.add_row(
            name,
            *(f"{v:.1f}" for v in (percentile(values, 50), percentile(values, 99), max(values))),
        )
    if deferred_ms:
        table.add_row(
            "deferred work, after the response",
            *(
                f"{v:.1f}"
                for v in (
                    percentile(deferred_ms, 50),
                    percentile(deferred_ms, 99),
                    max(deferred_ms),
                )
            ),
        )
    return table
