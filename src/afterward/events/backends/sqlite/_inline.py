"""Publishing without the thread hop: writes coalesced per event-loop iteration and run
on the loop's own thread, when the file is free.

A hop to the file's thread and back costs far more than the write it carries (a WAL
commit with ``synchronous=NORMAL`` is tens of microseconds). So a write submitted from
an event loop (``SQLiteFile.write``) waits for the end of the current loop iteration,
together with every other write submitted meanwhile (50 concurrent publishers: one
transaction), and the batch runs right there, on a connection of the loop's own, with
a zero busy timeout: the loop never waits for a lock. When the file is busy (another
process writing, or this process's thread), the batch goes to the file's thread, which
waits for the lock as usual. Each write runs in a savepoint of the shared transaction,
so one that fails rolls back alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LoopWriter", "Write"]

#: One pending write: the function, and the future its caller awaits.
Write = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


class LoopWriter:
    """The coalesced writes of one event loop to one file (see the module docstring).

    Args:
        path: the file.
        fallback: hands a batch to the file's thread (when the file is busy).
        error: turns an exception into what the caller sees (``sqlite3`` errors
            translated).
    """

    def __init__(
        self,
        path: Path,
        fallback: Callable[[list[Write]], None],
        error: Callable[[BaseException], BaseException],
    ) -> None:
        self._path = path
        self._fallback = fallback
        self._error = error
        self._pending: list[Write] = []
        self._conn: sqlite3.Connection | None = None

    def submit(self, fn: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``fn`` for the end of this loop iteration; its future."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((fn, done))
        return done

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 0")  # never wait on the loop's thread
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
        return self._conn

    def _flush(self) -> None:
        batch = [(fn, done) for fn, done in self._pending if not done.cancelled()]
        self._pending = []
        if not batch:
            return
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy or locked: the thread waits for it
            self._fallback(batch)
            return
        except sqlite3.Error as exc:
            self._fail(batch, exc)
            return
        try:
            outcomes = self._run(conn, batch)
            if conn.in_transaction:  # else the one write failed and rolled back
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                self._fallback(batch)  # lost the lock mid-way: the thread tries again
            else:
                self._fail(batch, exc)
            return
        for (_, done), (result, failure) in zip(batch, outcomes, strict=True):
            if done.cancelled():
                continue
            if failure is not None:
                done.set_exception(failure)
            else:
                done.set_result(result)

    def _run(
        self, conn: sqlite3.Connection, batch: list[Write]
    ) -> list[tuple[Any, BaseException | None]]:
        """Run the writes in the open transaction; several each in a savepoint (one
        that fails rolls back alone), one on its own (its failure fails the whole)."""
        if len(batch) == 1:
            fn, _ = batch[0]
            try:
                return [(fn(conn), None)]
            except sqlite3.Error:
                raise
            except Exception as exc:
                conn.execute("ROLLBACK")
                return [(None, self._error(exc))]
        outcomes: list[tuple[Any, BaseException | None]] = []
        for fn, _ in batch:
            conn.execute("SAVEPOINT write")
            try:
                outcomes.append((fn(conn), None))
            except Exception as exc:  # only this write is rolled back
                conn.execute("ROLLBACK TO write")
                outcomes.append((None, self._error(exc)))
            conn.execute("RELEASE write")
        return outcomes

    def _fail(self, batch: list[Write], exc: BaseException) -> None:
        for _, done in batch:
            if not done.cancelled():
                done.set_exception(self._error(exc))

    def close(self) -> None:
        """Close this loop's connection (writes still pending go to the thread)."""
        if self._pending:
            batch, self._pending = self._pending, []
            self._fallback(batch)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
