"""Entry points the multi-process tests run in real subprocesses (``python -m``-free:
``python -c "from tests.events.procs import X; X(...)"``)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from afterward import defer
from afterward.events import Event, EventBus

__all__ = ["consume", "publish", "spawn", "work"]


def spawn(function: str, *args: Any) -> subprocess.Popen[bytes]:
    """Start ``tests.events.procs.<function>(*args)`` in a new Python process."""
    code = f"from tests.events.procs import {function}; {function}(*{args!r})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])


def publish(bus_url: str, prefix: str, count: int) -> None:
    """Publish ``count`` events keyed ``prefix``, numbered in order."""
    bus = EventBus(bus_url)
    for n in range(count):
        bus.publish_sync("t", {"p": prefix, "n": n}, key=prefix, id=f"{prefix}-{n}")


def consume(
    bus_url: str,
    effects_db: str,
    crash_at: int | None,
    inbox: bool,
    stop_when_idle: bool,
    work: float = 0.0,
) -> None:
    """Consume ``t`` in group ``g``; each handled event appends a row to ``effects_db``.

    With ``crash_at``, the process kills itself (SIGKILL) right after the handler for
    event number ``crash_at`` committed its effect, before the bus commit. ``work``:
    seconds each handler spends (a stand-in for real work, so a stream lasts a while).
    """
    bus = EventBus(bus_url, batch_size=20, claim_ttl=1.0)
    kill = lambda: os.kill(os.getpid(), 9)  # noqa: E731
    if inbox:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"sqlite:///{effects_db}")

        @bus.subscribe("t", group="g", inbox=engine)
        def handle_in_inbox(event: Event) -> None:
            time.sleep(work)
            event.session.execute(
                text("INSERT INTO effects VALUES (:id, :pid)"), {"id": event.id, "pid": os.getpid()}
            )
            if event.data["n"] == crash_at:
                defer(kill)  # runs once the handler's transaction committed

    else:
        conn = sqlite3.connect(
            effects_db, isolation_level=None, timeout=30, check_same_thread=False
        )

        @bus.subscribe("t", group="g")
        def handle(event: Event) -> None:
            conn.execute("INSERT INTO effects VALUES (?, ?)", (event.id, os.getpid()))
            if event.data["n"] == crash_at:
                defer(kill)

    asyncio.run(bus.run(stop_when_idle=stop_when_idle))


def work(bus_url: str, queue: str, concurrency: int, lease: float, grace: float = 30.0) -> None:
    """``afterward worker`` in this process, with a short lease for the tests."""
    from afterward.cli._worker import worker

    worker.main(
        [
            "--bus",
            bus_url,
            "--queue",
            queue,
            "--concurrency",
            str(concurrency),
            "--lease",
            str(lease),
            "--grace",
            str(grace),
        ],
        standalone_mode=True,
    )


def consume_poison(bus_url: str, effects_db: str, poison: int, batch_size: int = 20) -> None:
    """Consume ``t`` in group ``p`` until idle; the handler of event ``n == poison``
    kills this process (a segfault, the OOM killer) before doing anything."""
    bus = EventBus(bus_url, batch_size=batch_size, claim_ttl=1.0)
    conn = sqlite3.connect(effects_db, isolation_level=None, timeout=30, check_same_thread=False)

    @bus.subscribe("t", group="p", retries=2, backoff=0)
    def handle(event: Event) -> None:
        if event.data["n"] == poison:
            os._exit(9)
        conn.execute("INSERT INTO effects VALUES (?, ?)", (event.id, os.getpid()))

    asyncio.run(bus.run(stop_when_idle=True))
