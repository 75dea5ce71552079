"""defer(): response time, middleware throughput, call cost and memory.

1. Time to full response of an endpoint that has four 200 ms tasks to do: inline,
   deferred with afterward, Starlette BackgroundTasks, against the same endpoint with
   no work. uvicorn in its own process, a keep-alive client on loopback.
2. Requests/s of a trivial endpoint, bare app vs DeferMiddleware, under wrk; and the
   same apps' cost per request in process (steadier than wrk on a shared machine).
3. Cost of one defer() call and memory per pending callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import time
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._table import median_ms, table

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(cpu: int) -> list[str]:
    # Server and load generator on separate cores: far less noise on a 2-core machine.
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") else []


@contextlib.contextmanager
def _uvicorn(app: str, http: str = "h11") -> Iterator[int]:
    port = _free_port()
    process = subprocess.Popen(
        [
            *_pinned(0),
            sys.executable,
            "-m",
            "uvicorn",
            f"bench._defer_app:{app}",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            http,
            "--loop",
            "uvloop" if http == "httptools" else "asyncio",
        ],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(30)


def _response_times(port: int, path: str, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    samples = []
    for _ in range(count + 5):
        started = time.perf_counter()
        connection.request("GET", path)
        connection.getresponse().read()
        samples.append(time.perf_counter() - started)
    connection.close()
    return samples[5:]  # the first requests warm up the connection and the app


def response_time_table() -> str:
    rows = []
    with _uvicorn("wrapped") as port:
        base = median_ms(_response_times(port, "/none", 300))
        for label, path, count in [
            ("no work (baseline)", "/none", 300),
            ("afterward defer()", "/defer", 300),
            ("Starlette BackgroundTasks", "/background", 300),
            ("inline (awaited in the request)", "/inline", 5),
        ]:
            median = median_ms(_response_times(port, path, count))
            rows.append((label, count, median, median - base, median / base))
    return table(
        "Time to full response, endpoint with four 200 ms tasks (uvicorn, loopback)",
        ["endpoint", "requests", "median ms", "vs no work (ms)", "ratio to no work"],
        rows,
    )


def _wrk(port: int, seconds: int = 8) -> float:
    out = subprocess.run(
        [*_pinned(1), "wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def throughput_table() -> str:
    if shutil.which("wrk") is None:
        return "### Middleware throughput\n\nnot run: `wrk` is missing (scripts/install adds it)\n"
    # uvicorn's pure-Python h11 server, and uvicorn[standard]'s httptools + uvloop.
    servers = ["h11"] + (["httptools"] if importlib.util.find_spec("httptools") else [])
    apps = ["bare", "bare_with_header", "wrapped"]
    results: dict[tuple[str, str], list[float]] = {(s, a): [] for s in servers for a in apps}
    for _ in range(5):  # alternate to spread machine noise over every row
        for server, app in results:
            with _uvicorn(app, server) as port:
                _wrk(port, 2)  # warm up
                results[(server, app)].append(_wrk(port, 5))
    labels = {
        "bare": "bare Starlette",
        "bare_with_header": "bare + the same response header (no afterward)",
        "wrapped": "with DeferMiddleware",
    }
    rows = []
    for server in servers:
        bare = max(results[(server, "bare")])
        for app in apps:
            best = max(results[(server, app)])
            rows.append((server, labels[app], best, best / bare))
    return table(
        "Middleware throughput, trivial endpoint (uvicorn pinned to one core, wrk -t1 -c32 "
        "on the other, best of 5 alternating runs of 5 s)",
        ["server", "app", "req/s", "ratio to bare"],
        rows,
    )


def _per_request_us(app: Any, rounds: int = 20_000, repeat: int = 5) -> float:
    """Best µs per request of ``GET /none`` called in process, a task per request as
    uvicorn runs it, with a server that does nothing."""

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        return None

    async def serve() -> float:
        loop = asyncio.get_running_loop()
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(rounds):
                scope = {
                    "type": "http",
                    "http_version": "1.1",
                    "method": "GET",
                    "scheme": "http",
                    "path": "/none",
                    "raw_path": b"/none",
                    "root_path": "",
                    "query_string": b"",
                    "headers": [(b"host", b"127.0.0.1")],
                    "server": ("127.0.0.1", 8000),
                    "client": ("127.0.0.1", 50000),
                }
                await loop.create_task(app(scope, receive, send))
            best = min(best, time.perf_counter() - started)
        return best / rounds * 1e6

    return asyncio.run(serve())


def in_process_table() -> str:
    from bench import _defer_app

    apps = [
        ("bare Starlette", _defer_app.bare),
        ("bare + the same response header (no afterward)", _defer_app.bare_with_header),
        ("with DeferMiddleware", _defer_app.wrapped),
    ]
    costs = [(label, _per_request_us(app)) for label, app in apps]
    bare = costs[0][1]
    return table(
        "Middleware cost per request in process (trivial endpoint, a task per request, "
        "best of 5 runs of 20,000)",
        ["app", "µs per request", "vs bare (µs)"],
        [(label, cost, cost - bare) for label, cost in costs],
    )


_MEMORY_PROBE = """
import gc, os
from afterward import defer
from afterward.defer import DeferScope

def rss_kib():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

def noop():
    return None

scope = DeferScope("bench")
with scope:
    gc.collect()
    before = rss_kib()
    for _ in range(10_000):
        defer(noop)
    gc.collect()
    print(rss_kib() - before)
    scope._callbacks.clear()
"""


def call_cost_table() -> str:
    from afterward import defer
    from afterward.defer import DeferScope

    def noop() -> None:
        return None

    # Memory first, in a fresh interpreter: no arenas left over from other runs.
    grown_kib = int(
        subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, check=True
        ).stdout
    )
    rounds = 200_000
    scope = DeferScope("bench")
    with scope:
        per_call = min(timeit.repeat(lambda: defer(noop), number=rounds, repeat=3)) / rounds
        baseline = min(timeit.repeat(lambda: [].append(noop), number=rounds, repeat=3)) / rounds
        scope._callbacks.clear()  # don't run 600k no-ops at exit
    return table(
        "defer() call cost and memory",
        ["measure", "value", "target"],
        [
            ("one defer() call (µs)", per_call * 1e6, "< 5"),
            ("one list.append() for scale (µs)", baseline * 1e6, ""),
            ("RSS growth for 10,000 pending callbacks (MiB)", grown_kib / 1024, "< 20"),
        ],
    )


def run() -> str:
    """Run the defer benchmarks and return their tables."""
    return "\n".join(
        [response_time_table(), throughput_table(), in_process_table(), call_cost_table()]
    )
