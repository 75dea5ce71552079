"""Jobs the queue tests dispatch; they import back in worker subprocesses."""

from __future__ import annotations

import os
import sqlite3
import time

from afterward import Job, job
from afterward.jobs import current_payload

__all__ = [
    "AppendEffect",
    "FailsFirst",
    "Flaky",
    "attempt_until_file",
    "block_until_file",
    "exit_now",
    "nap",
    "record",
]


def _connect(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=30)


def _record(path: str, value: str) -> None:
    with _connect(path) as conn:
        conn.execute("INSERT INTO runs VALUES (?, ?, ?)", (value, time.time(), os.getpid()))


@job(tries=1)
def record(path: str, value: str) -> None:
    """Append ``value`` (and the time) to the ``runs`` table of ``path``."""
    _record(path, value)


class Flaky(Job):
    """Fails its first ``failures`` attempts (counted in ``path``), then records."""

    tries = 3
    backoff = (0.05, 0.1)

    def __init__(self, path: str, failures: int) -> None:
        self.path = path
        self.failures = failures

    def handle(self) -> None:
        with _connect(self.path) as conn:
            (tried,) = conn.execute("SELECT COUNT(*) FROM runs WHERE value = 'try'").fetchone()
            conn.execute("INSERT INTO runs VALUES ('try', ?, ?)", (time.time(), os.getpid()))
        if tried < self.failures:
            raise RuntimeError(f"attempt {tried + 1} fails")
        _record(self.path, "done")

    def failed(self, error: BaseException) -> None:
        with _connect(self.path) as conn:
            conn.execute("INSERT INTO runs VALUES ('failed-hook', ?, ?)", (time.time(), 0))


@job(tries=2)
def block_until_file(path: str, flag: str) -> None:
    """Record a start, then wait until ``flag`` exists (a worker killed here leaves it
    unfinished; its second try runs it again)."""
    with _connect(path) as conn:
        conn.execute("INSERT INTO runs VALUES ('started', ?, ?)", (time.time(), os.getpid()))
    while not os.path.exists(flag):
        time.sleep(0.01)
    _record(path, "finished")


class AppendEffect(Job):
    """The crash test's job: its effect and its job ID commit in one transaction.

    ``done`` holds each job ID once (primary key); a redelivered job that finds its ID
    there skips the effect. ``effects`` has no constraint: a duplicate would show. The
    job ID is ``n`` (dispatched once each); ``deliveries`` counts every run, committed
    before the transaction, to show that redeliveries happened.
    """

    tries = 5

    def __init__(self, path: str, n: int) -> None:
        self.path = path
        self.n = n

    def handle(self) -> None:
        job_id = self.n
        conn = _connect(self.path)
        try:
            conn.execute("INSERT INTO deliveries VALUES (?)", (job_id,))
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM done WHERE job_id = ?", (job_id,)).fetchone():
                conn.execute("ROLLBACK")
                return
            conn.execute("INSERT INTO done VALUES (?)", (job_id,))
            conn.execute("INSERT INTO effects VALUES (?)", (self.n,))
            conn.execute("COMMIT")
        finally:
            conn.close()


class FailsFirst(Job):
    """Fails its first attempt; its retry (1 s later) is still pending at exit."""

    tries = 2
    backoff = (1,)

    def __init__(self, path: str) -> None:
        self.path = path

    def handle(self) -> None:
        with _connect(self.path) as conn:
            (tried,) = conn.execute("SELECT COUNT(*) FROM runs WHERE value = 'try'").fetchone()
            conn.execute("INSERT INTO runs VALUES ('try', ?, ?)", (time.time(), os.getpid()))
        if tried == 0:
            raise RuntimeError("first attempt fails")


@job(tries=1)
def nap(path: str, value: str, seconds: float) -> None:
    """Sleep ``seconds`` (a stand-in for real work), then record ``value``."""
    time.sleep(seconds)
    _record(path, value)


@job(tries=2)
def exit_now(path: str) -> None:
    """Record a delivery, then end the worker process at once (a segfault, the OOM
    killer): the attempt never returns."""
    _record(path, "delivered")
    os._exit(3)


@job(tries=1)
def attempt_until_file(path: str, flag: str) -> None:
    """Record ``started <attempt>``, wait until ``flag`` exists, record ``finished``."""
    payload = current_payload()
    _record(path, f"started {payload.attempt if payload else '?'}")
    while not os.path.exists(flag):
        time.sleep(0.01)
    _record(path, "finished")
