"""The jobs of ``python -m bench queue``: each writes what the benchmark measures into a
SQLite file named by the job (WAL, so worker processes write at once)."""

from __future__ import annotations

import os
import sqlite3
import time

from afterward import Job, job

__all__ = ["Effect", "nap", "setup", "stamp"]


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def setup(path: str) -> None:
    """Create the results file."""
    with _connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE starts (name TEXT, due REAL, started REAL, pid INTEGER)")
        conn.execute("CREATE TABLE done (n INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE effects (n INTEGER)")
        conn.execute("CREATE TABLE deliveries (n INTEGER)")


@job(tries=1)
def stamp(path: str, name: str, due: float) -> None:
    """Record when it started against when it was due."""
    with _connect(path) as conn:
        conn.execute(
            "INSERT INTO starts VALUES (?, ?, ?, ?)", (name, due, time.time(), os.getpid())
        )


@job(tries=1)
def nap(path: str, seconds: float) -> None:
    """Work for ``seconds`` (a 20 ms API call, say), then record the start."""
    time.sleep(seconds)
    with _connect(path) as conn:
        conn.execute("INSERT INTO starts VALUES ('nap', 0, ?, ?)", (time.time(), os.getpid()))


class Effect(Job):
    """The chaos run's job: its effect and its ID commit in one transaction; every
    delivery is counted before (so repeats show)."""

    tries = 10

    def __init__(self, path: str, n: int) -> None:
        self.path = path
        self.n = n

    def handle(self) -> None:
        conn = _connect(self.path)
        try:
            conn.execute("INSERT INTO deliveries VALUES (?)", (self.n,))
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM done WHERE n = ?", (self.n,)).fetchone():
                conn.execute("ROLLBACK")
                return
            conn.execute("INSERT INTO done VALUES (?)", (self.n,))
            conn.execute("INSERT INTO effects VALUES (?)", (self.n,))
            conn.execute("COMMIT")
        finally:
            conn.close()
