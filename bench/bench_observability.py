"""Observability: what the middleware, tracing and metrics cost, against their peers.

1. The middleware against the peer doing the same header work: a trivial Starlette
   endpoint bare, behind ``DeferMiddleware`` (this code, and the code before the
   observability change: ``git merge-base HEAD main``, run from a ``git archive`` of it),
   behind asgi-correlation-id's middleware (the same ``X-Correlation-ID`` response
   header); with tracing: ``DeferMiddleware`` + ``instrument()`` against
   opentelemetry-instrumentation-asgi + asgi-correlation-id, both on an SDK
   ``TracerProvider`` that exports nowhere. Measured three ways: cost per request in
   process (a subprocess per app, interleaved rounds), requests/s under wrk (uvicorn on
   one core, wrk on the other), and instructions per request of the uvicorn process
   under callgrind (instrumentation switched on after a warm-up).
2. The counters a handled event pays (labeled counter, histogram).
3. A metrics scrape at 1,000 group x topic pairs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import glob
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Iterator
from pathlib import Path

from bench._table import table
from bench.bench_defer import _free_port, _pinned, _wrk

ROOT = Path(__file__).resolve().parent.parent

#: (label, factory in bench._observability_app, code: None = this tree, "base" = before)
APPS = [
    ("bare Starlette", "bare", None),
    ("DeferMiddleware, before this change", "afterward", "base"),
    ("DeferMiddleware", "afterward", None),
    ("asgi-correlation-id (same header)", "peer", None),
    ("DeferMiddleware + instrument()", "afterward_traced", None),
    ("otel-instrumentation-asgi + asgi-correlation-id", "peer_traced", None),
]


@contextlib.contextmanager
def _base_source() -> Iterator[Path]:
    """``src/`` as it was before the observability change, in a temporary directory."""
    ref = (
        os.environ.get("AFTERWARD_BENCH_BASE")
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    with tempfile.TemporaryDirectory(prefix="afterward-base-") as tmp:
        archive = subprocess.run(
            ["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp) / "src"


def _env(code: str | None, base: Path) -> dict[str, str]:
    paths = ([str(base)] if code == "base" else []) + [str(ROOT)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


# -- 1. in process ---------------------------------------------------------------------

_IN_PROCESS = """
import afterward, sys
from bench import _observability_app
from bench.bench_defer import _per_request_us
assert ("{code}" == "base") == ("afterward-base-" in afterward.__file__), afterward.__file__
print(_per_request_us(getattr(_observability_app, "{factory}")(), rounds=10_000, repeat=3))
"""


def in_process_table(base: Path, rounds: int = 5) -> str:
    costs: dict[str, list[float]] = {label: [] for label, _, _ in APPS}
    for _ in range(rounds):  # interleaved: machine noise spreads over every row
        for label, factory, code in APPS:
            out = subprocess.run(
                [sys.executable, "-c", _IN_PROCESS.format(factory=factory, code=code)],
                cwd=ROOT,
                env=_env(code, base),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            costs[label].append(float(out))
    medians = {label: statistics.median(v) for label, v in costs.items()}
    bare = medians["bare Starlette"]
    peer = medians["asgi-correlation-id (same header)"]
    peer_traced = medians["otel-instrumentation-asgi + asgi-correlation-id"]
    rows = []
    for label, _, _ in APPS:
        versus = peer_traced if "instrument" in label else peer
        rows.append((label, medians[label], medians[label] - bare, medians[label] / versus))
    return table(
        f"Middleware cost per request in process (trivial endpoint, a subprocess per app, "
        f"median of {rounds} interleaved rounds of 3 x 10,000)",
        ["app", "µs per request", "vs bare (µs)", "ratio to its peer"],
        rows,
    )


# -- 1. under uvicorn ------------------------------------------------------------------


def _uvicorn_command(factory: str, server: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"bench._observability_app:{factory}",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--http",
        server,
        "--loop",
        "uvloop" if server == "httptools" else "asyncio",
    ]


def _wait_port(port: int, seconds: float = 60) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port}")
        time.sleep(0.05)


@contextlib.contextmanager
def _served(command: list[str], env: dict[str, str], port: int) -> Iterator[int]:
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        _wait_port(port)
        yield process.pid
    finally:
        process.terminate()
        process.wait(60)


def throughput_table(base: Path, server: str = "httptools", rounds: int = 3) -> str:
    if shutil.which("wrk") is None:
        return "### Middleware throughput\n\nnot run: `wrk` is missing (scripts/install adds it)\n"
    results: dict[str, list[float]] = {label: [] for label, _, _ in APPS}
    for _ in range(rounds):
        for label, factory, code in APPS:
            port = _free_port()
            command = [*_pinned(0), *_uvicorn_command(factory, server, port)]
            with _served(command, _env(code, base), port):
                _wrk(port, 2)  # warm up
                results[label].append(_wrk(port, 5))
    medians = {label: statistics.median(v) for label, v in results.items()}
    peer = medians["asgi-correlation-id (same header)"]
    peer_traced = medians["otel-instrumentation-asgi + asgi-correlation-id"]
    rows = [
        (label, medians[label], medians[label] / (peer_traced if "instrument" in label else peer))
        for label, _, _ in APPS
    ]
    return table(
        f"Middleware throughput under uvicorn ({server}; pinned to one core, wrk -t1 -c32 on "
        f"the other; median of {rounds} interleaved runs of 5 s)",
        ["app", "req/s", "ratio to its peer"],
        rows,
    )


def _requests(port: int, count: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(count):
        connection.request("GET", "/none")
        connection.getresponse().read()
    connection.close()


def _instructions_per_request(
    factory: str, code: str | None, base: Path, server: str, count: int
) -> float:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="afterward-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",  # start-up and warm-up at near-native speed
            f"--callgrind-out-file={out}",
            *_uvicorn_command(factory, server, port),
        ]
        with _served(command, _env(code, base), port) as pid:
            _requests(port, 200)  # warm up (imports, caches, the first connections)
            subprocess.run(
                ["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True
            )
            _requests(port, count)
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
            dumps = sorted(glob.glob(f"{out}*"), key=os.path.getmtime)
            text = Path(dumps[-1]).read_text()
        match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
        assert match, text[:500]
        return int(match.group(1)) / count


def instructions_table(base: Path, server: str = "httptools", count: int = 1_000) -> str:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return "### Instructions per request\n\nnot run: valgrind is missing\n"
    costs = {
        label: _instructions_per_request(factory, code, base, server, count)
        for label, factory, code in APPS
    }
    bare = costs["bare Starlette"]
    peer = costs["asgi-correlation-id (same header)"]
    peer_traced = costs["otel-instrumentation-asgi + asgi-correlation-id"]
    rows = [
        (
            label,
            f"{costs[label] / 1000:,.1f}k",
            f"{(costs[label] - bare) / 1000:+,.1f}k",
            costs[label] / (peer_traced if "instrument" in label else peer),
        )
        for label, _, _ in APPS
    ]
    return table(
        f"Instructions per request of the uvicorn process ({server}; callgrind, {count:,} "
        "keep-alive requests after a warm-up)",
        ["app", "instructions", "vs bare", "ratio to its peer"],
        rows,
    )


# -- 2. counters -----------------------------------------------------------------------


def counters_table() -> str:
    from afterward._stats import incr, observe, reset_stats

    rounds = 200_000
    labels = ("billing", "order.completed")

    def per_call(fn: object) -> float:
        return min(timeit.repeat(fn, number=rounds, repeat=5)) / rounds * 1e6  # type: ignore[arg-type]

    # The counter as it was before (a lock around a Counter), for the ratio in this run.
    lock, before = threading.Lock(), collections.Counter[str]()

    def locked_incr(name: str) -> None:
        with lock:
            before[name] += 1

    old = per_call(lambda: locked_incr("events.handled"))
    plain = per_call(lambda: incr("events.handled"))
    labeled = per_call(lambda: incr("events.handled", labels=labels))
    histogram = per_call(lambda: observe("events.handler_seconds", labels, 0.003))

    def one_event() -> None:  # what _batch does per handled event
        started = time.perf_counter()
        observe("events.handler_seconds", labels, time.perf_counter() - started)
        incr("events.handled", labels=labels)

    event = per_call(one_event)
    reset_stats()
    return table(
        "Counters per handled event (best of 5 x 200,000 calls)",
        ["call", "µs", "target"],
        [
            ("before this change: incr(name) under a lock", old, ""),
            ("incr(name)", plain, ""),
            ("incr(name, labels=(group, topic))", labeled, ""),
            ("observe(histogram, labels, seconds)", histogram, ""),
            ("one handled event: both + two perf_counter()", event, "< 1"),
        ],
    )


# -- 3. scrape -------------------------------------------------------------------------


async def _pairs_bus(url: str, groups: int, topics: int) -> object:
    from afterward import EventBus

    bus = EventBus(url, keep_history=False)

    async def handle(event: object) -> None:
        return None

    for g in range(groups):
        for t in range(topics):
            bus.subscribe(f"topic-{t}", group=f"group-{g}")(handle)
    for t in range(topics):
        await bus.publish(f"topic-{t}", {"n": t})
    await bus.drain()
    for t in range(topics):  # one event of lag for every pair
        await bus.publish(f"topic-{t}", {"n": t})
    return bus


def scrape_table(groups: int = 100, topics: int = 10, repeat: int = 7) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from afterward._stats import reset_stats
    from afterward.integrations._metrics import GaugeCache, render, snapshot
    from afterward.integrations.prometheus import AfterwardCollector

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in (("memory", "memory://"), ("sqlite", f"sqlite:///{tmp}/bench.db")):
            reset_stats()

            async def measure(url: str = url) -> tuple[list[float], list[float], int]:
                bus = await _pairs_bus(url, groups, topics)
                reads, renders, lines = [], [], 0
                for _ in range(repeat):
                    cache = GaugeCache(bus)  # type: ignore[arg-type]
                    started = time.perf_counter()
                    gauges = await cache.refresh()
                    read = time.perf_counter()
                    text = render(snapshot(gauges))
                    reads.append(read - started)
                    renders.append(time.perf_counter() - read)
                    lines = text.count("\n")
                return reads, renders, lines

            reads, renders, lines = asyncio.run(measure())
            read, shown = statistics.median(reads) * 1e3, statistics.median(renders) * 1e3
            rows.append((f"{name}: backend reading (lag, dead letters, depth)", read, ""))
            rows.append((f"{name}: rendering {lines:,} lines", shown, ""))
            rows.append((f"{name}: a scrape with a stale cache (both)", read + shown, "< 50"))
        registry = CollectorRegistry()
        collector = AfterwardCollector(asyncio.run(_pairs_bus("memory://", groups, topics)))  # type: ignore[arg-type]
        registry.register(collector)
        collector.gauges.get()
        started = time.perf_counter()
        generate_latest(registry)
        rows.append(
            (
                "for scale: prometheus-client's families + generate_latest",
                (time.perf_counter() - started) * 1e3,
                "",
            )
        )
    return table(
        f"A metrics scrape at {groups * topics:,} group x topic pairs ({groups} groups x "
        f"{topics} topics; median of {repeat})",
        ["step", "ms", "target"],
        rows,
    )


def run() -> str:
    """Run the observability benchmarks and return their tables."""
    with _base_source() as base:
        parts = [
            counters_table(),
            scrape_table(),
            in_process_table(base),
            throughput_table(base),
            instructions_table(base),
        ]
    return "\n".join(parts)
