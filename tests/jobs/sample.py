"""Jobs used by the tests: importable by path, so every connection can run them."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from afterward import Job, correlation_id, defer, job

#: key -> what happened, for jobs that run in the test process
events: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)


class Flaky(Job):
    """Fails its first ``failures`` attempts."""

    tries = 3
    backoff = (0.2, 0.4)

    def __init__(self, key: str, failures: int = 0) -> None:
        self.key = key
        self.failures = failures

    def handle(self) -> None:
        attempts = [e for e in events[self.key] if e[0] == "handle"]
        events[self.key].append(("handle", time.monotonic(), correlation_id()))
        if len(attempts) < self.failures:
            raise RuntimeError(f"attempt {len(attempts) + 1} fails")

    def failed(self, error: BaseException) -> None:
        events[self.key].append(("failed", repr(error), correlation_id()))


class SlowAsync(Job):
    timeout = 0.2

    def __init__(self, key: str) -> None:
        self.key = key

    async def handle(self) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events[self.key].append(("cancelled",))
            raise


class DefersInside(Job):
    def __init__(self, key: str) -> None:
        self.key = key

    async def handle(self) -> None:
        defer(events[self.key].append, ("deferred",))
        await asyncio.sleep(0.05)
        events[self.key].append(("handle returns",))


@job(tries=2)
async def record(key: str, value: int, *, label: str = "x") -> None:
    events[key].append(("record", value, label, correlation_id()))


class WriteFile(Job):
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def handle(self) -> None:
        print("writing", self.path)
        Path(self.path).write_text(f"{self.text} {correlation_id()} {os.getpid()}")


class WaitThenWrite(Job):
    """Writes ``started`` (its PID), waits for ``go`` to exist, then writes ``done``."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def handle(self) -> None:
        (self.folder / "started").write_text(str(os.getpid()))
        deadline = time.monotonic() + 30
        while not (self.folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        print("still printing after the server is gone")
        (self.folder / "done").write_text(str(os.getpid()))


class Hang(Job):
    timeout = 0.5

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def handle(self) -> None:
        (self.folder / "pid").write_text(str(os.getpid()))
        time.sleep(60)

    def failed(self, error: BaseException) -> None:
        (self.folder / "failed").write_text(type(error).__name__)


class Patient(Flaky):
    """Waits a minute before retrying: still waiting when the process exits."""

    backoff = (60,)


#: set by tests to let Blocked jobs finish
released = threading.Event()


class Blocked(Job):
    """Runs until ``released`` is set (at most 10 s)."""

    def __init__(self, key: str) -> None:
        self.key = key

    async def handle(self) -> None:
        deadline = time.monotonic() + 10
        while not released.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        events[self.key].append(("released",))


class OwnTimeout(Job):
    """Has a time limit, but fails at once with a TimeoutError of its own."""

    timeout = 30

    def __init__(self, key: str) -> None:
        self.key = key

    def handle(self) -> None:
        raise TimeoutError("the payment API timed out")

    def failed(self, error: BaseException) -> None:
        events[self.key].append(("failed", type(error).__name__, str(error)))
