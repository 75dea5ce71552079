"""The work queue: ``python -m bench queue`` (issue 12's measurements).

For each backend (SQLite file; Redis when reachable; Kafka on a tansu broker this
benchmark starts, its state store a SQLite file, unless ``BENCH_KAFKA=0``):

1. Head of line: ``BENCH_DELAYED`` (10,000) jobs delayed by an hour are queued first,
   then 1,000 no-op jobs, one ``afterward worker -c 1``: the wait of each of the 1,000
   (start minus dispatch; target p99 under 1 s); and 100 jobs delayed by 5 s: how late
   after their due time they start (target within 1 s).
2. Scale-out: 2,000 jobs of 20 ms, 4 worker processes ``-c 1`` against 1 (target 3.5x).
3. Chaos: 1,000 jobs, one ``-c 4`` worker killed with SIGKILL 10 times at random: jobs
   lost (target 0) and repeated deliveries per kill (target at most 4).

Workers are real ``afterward worker`` processes; each run's clock starts once its
workers are up (a warm-up job done).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from afterward.events import EventBus
from afterward.jobs import unregister_connection
from bench._queue_run import TAG, delete_keys
from bench._queue_work import Effect, nap, setup, stamp
from bench._table import table

__all__ = ["run"]

BIN = Path(sys.executable).parent
DELAYED = int(os.environ.get("BENCH_DELAYED", "10000"))
DUE = 1_000
SCALE_JOBS = int(os.environ.get("BENCH_SCALE_JOBS", "2000"))
CHAOS_JOBS = int(os.environ.get("BENCH_CHAOS_JOBS", "1000"))
KILLS = 10
Url = Callable[[Path], str]


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path, timeout=60) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _wait(predicate: Callable[[], bool], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's jobs did not finish in time")
        time.sleep(0.01)


@contextmanager
def _workers(
    url: str, count: int, concurrency: int, lease: float = 30
) -> Iterator[list[subprocess.Popen[bytes]]]:
    argv = [str(BIN / "afterward"), "worker", "--bus", url, "-c", str(concurrency)]
    argv += ["--lease", str(lease)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    quiet = subprocess.DEVNULL
    procs = [subprocess.Popen(argv, stdout=quiet, stderr=quiet, env=env) for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def _bus(url: str) -> Iterator[EventBus]:
    bus = EventBus(url)
    bus.use_for_jobs("default")
    try:
        yield bus
    finally:
        unregister_connection("queue")


def _lateness(results: Path, name: str) -> list[float]:
    with sqlite3.connect(results) as conn:
        rows = conn.execute("SELECT started, due FROM starts WHERE name = ?", (name,))
        return sorted(started - due for started, due in rows)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def head_of_line(url: str, results: Path) -> list[object]:
    path = str(results)
    with _bus(url):
        later = time.time() + 3600
        for n in range(DELAYED):
            stamp.dispatch(path, f"later-{n}", later, connection="queue", delay=3600)
        with _workers(url, 1, 1):
            stamp.dispatch(path, "warm-up", time.time(), connection="queue")
            _wait(lambda: _count(results, "SELECT COUNT(*) FROM starts") >= 1)
            soon = time.time() + 5
            at = datetime.fromtimestamp(soon, UTC)
            for _ in range(100):
                stamp.dispatch(path, "soon", soon, connection="queue", at=at)
            for _ in range(DUE):
                stamp.dispatch(path, "now", time.time(), connection="queue")
            counted = "SELECT COUNT(*) FROM starts WHERE name != 'warm-up'"
            _wait(lambda: _count(results, counted) >= DUE + 100)
    waits, late = _lateness(results, "now"), _lateness(results, "soon")
    p99 = waits[int(len(waits) * 0.99) - 1]
    met = p99 < 1 and max(late) < 1
    return [_ms(statistics.median(waits)), _ms(p99), _ms(max(late)), _verdict(met)]


def scale_out(url: str, results: Path, processes: int) -> float:
    path = str(results)
    with _bus(url), _workers(url, processes, 1) as procs:
        for _ in procs:
            nap.dispatch(path, 0.0, connection="queue")
        _wait(lambda: _count(results, "SELECT COUNT(*) FROM starts") >= len(procs))
        base = _count(results, "SELECT COUNT(*) FROM starts")
        started = time.perf_counter()
        for _ in range(SCALE_JOBS):
            nap.dispatch(path, 0.02, connection="queue")
        _wait(lambda: _count(results, "SELECT COUNT(*) FROM starts") >= base + SCALE_JOBS)
        return time.perf_counter() - started


def chaos(url: str, results: Path, seed: int = 5) -> list[object]:
    rng = random.Random(seed)
    kills = 0
    with _bus(url):
        for n in range(CHAOS_JOBS):
            Effect(str(results), n).dispatch(connection="queue")
        while _count(results, "SELECT COUNT(*) FROM done") < CHAOS_JOBS:
            with _workers(url, 1, 4, lease=1.0) as (worker,):
                if kills >= KILLS:
                    _wait(lambda: _count(results, "SELECT COUNT(*) FROM done") >= CHAOS_JOBS)
                    continue
                start = _count(results, "SELECT COUNT(*) FROM deliveries")
                _wait(lambda: _count(results, "SELECT COUNT(*) FROM deliveries") > start)  # noqa: B023
                time.sleep(rng.uniform(0, 0.3))  # a random kill point, not synchronization
                worker.kill()
                worker.wait()
                kills += 1
    effects = _count(results, "SELECT COUNT(*) FROM effects")
    distinct = _count(results, "SELECT COUNT(DISTINCT n) FROM effects")
    repeats = _count(results, "SELECT COUNT(*) FROM deliveries") - CHAOS_JOBS
    met = distinct == CHAOS_JOBS and effects == CHAOS_JOBS and repeats <= 4 * kills
    per_kill = f"{repeats / max(1, kills):.1f}"
    return [kills, CHAOS_JOBS - distinct, effects - distinct, repeats, per_kill, _verdict(met)]


def _kafka(stack: ExitStack) -> list[tuple[str, Url, Callable[[], object]]]:
    """The Kafka row's bus URLs, on a tansu broker started for the run."""
    if os.environ.get("BENCH_KAFKA", "1") == "0":
        return []
    from tests.events.kafka_broker import running_tansu

    broker = stack.enter_context(running_tansu())
    # tansu keeps a member that left until its session expires: a short session.
    options = "session_timeout_ms=2000&rebalance_timeout_ms=1000"

    def url(tmp: Path) -> str:
        store = quote(f"sqlite:///{tmp / 'state.db'}", safe="")
        return f"kafka://{broker.bootstrap}?{options}&prefix={tmp.name}.&store={store}"

    return [("Kafka", url, lambda: None)]


def _backends(stack: ExitStack) -> list[tuple[str, Url, Callable[[], object]]]:
    found: list[tuple[str, Url, Callable[[], object]]] = [
        ("SQLite", lambda tmp: f"sqlite:///{tmp / 'bus.db'}", lambda: None),
        *_kafka(stack),
    ]
    try:
        import redis

        redis.Redis().ping()
    except Exception:  # no Redis here: its rows are left out
        return found
    prefix = f"{TAG}-queue-{uuid.uuid4().hex[:6]}"
    numbers = iter(range(1000))
    found.append(
        (
            "Redis",
            lambda tmp: f"redis://127.0.0.1:6379/0?prefix={prefix}-{next(numbers)}:",
            lambda: delete_keys(0, f"{prefix}*"),
        )
    )
    return found


def _fresh(tmp: Path, label: str, make_url: Url) -> tuple[str, Path]:
    folder = tmp / label
    folder.mkdir()
    results = folder / "results.db"
    setup(str(results))
    return make_url(folder), results


HOL = ["backend", "wait p50 ms", "wait p99 ms", "5 s-delayed: latest start after due, ms"]
SCALE = ["backend", "1 process s", "4 processes s", "speed-up", "target 3.5x"]
CHAOS = ["backend", "kills", "lost", "duplicate effects", "repeated deliveries", "per kill"]


def run() -> str:
    hol: list[list[object]] = []
    scale: list[list[object]] = []
    wild: list[list[object]] = []
    with ExitStack() as stack:
        for name, make_url, clean in _backends(stack):
            try:
                with tempfile.TemporaryDirectory(prefix="afterward-bench-queue-") as folder:
                    tmp = Path(folder)
                    hol.append([name, *head_of_line(*_fresh(tmp, "hol", make_url))])
                    one = scale_out(*_fresh(tmp, "one", make_url), processes=1)
                    four = scale_out(*_fresh(tmp, "four", make_url), processes=4)
                    ratio = one / four
                    speed = [f"{one:.2f}", f"{four:.2f}", f"{ratio:.2f}x", _verdict(ratio >= 3.5)]
                    scale.append([name, *speed])
                    wild.append([name, *chaos(*_fresh(tmp, "chaos", make_url))])
            finally:
                clean()
    return _tables(hol, scale, wild)


def _tables(hol: list[list[object]], scale: list[list[object]], wild: list[list[object]]) -> str:
    return "\n".join(
        [
            table(
                f"Head of line: {DELAYED:,} jobs delayed 1 h first, then {DUE:,} due, -c 1",
                [*HOL, "targets: p99 < 1 s, late < 1 s"],
                hol,
            ),
            table(f"Scale-out: {SCALE_JOBS:,} jobs of 20 ms, 1 vs 4 workers -c 1", SCALE, scale),
            table(
                f"Chaos: {CHAOS_JOBS:,} jobs, a -c 4 worker killed {KILLS} times",
                [*CHAOS, "targets: 0 lost, <= 4 per kill"],
                wild,
            ),
        ]
    )
