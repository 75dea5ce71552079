"""One SQLite file, one connection, one thread: how the SQLite backend runs its SQL.

Every primitive is a function of a ``sqlite3.Connection`` handed to :meth:`SQLiteFile.run`,
which runs it on the file's own thread (the stdlib ``sqlite3`` module blocks; a primitive
handles a whole batch, so the thread hop is paid once per batch, not per event: which
is why there is no aiosqlite). Writes take the lock up front (``BEGIN IMMEDIATE``) so
offsets are assigned without races between processes.

Group commit: writes that queue up while the thread is busy run in one transaction,
each inside a savepoint of its own, so concurrent publishers share commits and a write
that fails rolls back alone. Reads run in the queue's order between them, so a read
sees every write queued before it.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from afterward._exceptions import BackendError, BackendUnavailable, ConfigError
from afterward.events.backends.sqlite._inline import LoopWriter, Write

__all__ = ["SQLiteFile", "path_of"]

T = TypeVar("T")

#: Writes joined into one transaction at most (bounds a commit's size and latency).
GROUP_LIMIT = 256


def path_of(url: str) -> Path:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ConfigError(f"SQLite bus URLs look like sqlite:///afterward.db, got {url!r}")
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    write: bool
    done: Future[Any]


class SQLiteFile:
    """The connection to one SQLite file and the thread that owns it.

    Args:
        path: the file (created with its tables on first connect).
        schema: the DDL run at connect (idempotent).
        migrate: run at connect before the DDL: upgrades an older file in place.
    """

    def __init__(
        self,
        path: Path,
        schema: str,
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        self._schema = schema
        self._migrate = migrate
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._opened: Future[None] | None = None
        self._ready = False
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWriter] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run ``fn(connection)`` on the file's thread (in a transaction when ``write``).

        Raises:
            BackendError: SQLite failed (``BackendUnavailable``: the file cannot be
                opened or stayed locked past the busy timeout).
        """
        if not self._ready:
            await self.connect()
        done: Future[T] = Future()
        self._jobs.put(_Job(fn, write, done))
        return await asyncio.wrap_future(done)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run the write ``fn(connection)`` at the end of this loop iteration, in one
        transaction with the writes submitted meanwhile, on this loop's thread when the
        file is free, else on the file's thread (see :mod:`._inline`).

        Raises:
            BackendError: as :meth:`run`.
        """
        if not self._ready:
            await self.connect()
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            writer = self._writers[loop] = LoopWriter(
                self.path, functools.partial(self._hand_over, loop), self._error
            )
        result: T = await writer.submit(fn)
        return result

    def _hand_over(self, loop: asyncio.AbstractEventLoop, batch: list[Write]) -> None:
        """A loop's batch goes to the file's thread (the file was busy)."""
        for fn, waiter in batch:
            done: Future[Any] = Future()
            done.add_done_callback(functools.partial(_back_to, loop, waiter))
            self._jobs.put(_Job(fn, True, done))

    async def connect(self) -> None:
        """Start the thread and open the file. Idempotent."""
        with self._lock:
            opened = self._opened
            if opened is None:
                opened = self._opened = Future()
                # A daemon thread: it keeps working at interpreter exit, when deferred
                # jobs are handed to the queue.
                self._thread = threading.Thread(
                    target=self._serve, args=(opened,), name="afterward-sqlite", daemon=True
                )
                self._thread.start()
        try:
            await asyncio.wrap_future(opened)
            self._ready = True
        except BaseException:
            with self._lock:
                if self._opened is opened:
                    self._opened = None
            raise

    async def aclose(self) -> None:
        """Close the connection once the queued work is done; the file may be opened
        again."""
        with self._lock:
            opened, self._opened = self._opened, None
            thread, self._thread = self._thread, None
            self._ready = False
        writers, self._writers = list(self._writers.values()), weakref.WeakKeyDictionary()
        for writer in writers:
            writer.close()
        if opened is None or thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(thread.join)

    # -- the thread -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if self._migrate is not None:
            self._migrate(conn)
        conn.executescript(self._schema)
        return conn

    def _serve(self, opened: Future[None]) -> None:
        try:
            conn = self._open()
        except sqlite3.Error as exc:
            opened.set_exception(self.translate(exc))
            return
        opened.set_result(None)
        try:
            while self._step(conn):
                pass
        finally:
            conn.close()

    def _step(self, conn: sqlite3.Connection) -> bool:
        """Run what is queued; false once asked to stop."""
        job = self._jobs.get()
        if job is None:
            self._fail_queued(BackendError("the SQLite bus is closed", backend="sqlite"))
            return False
        writes: list[_Job] = []
        while job is not None:
            if job.write:
                writes.append(job)
                if len(writes) >= GROUP_LIMIT:
                    self._commit(conn, writes)
                    writes = []
            else:
                self._commit(conn, writes)
                writes = []
                _settle(job, conn, self)
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
        else:  # a stop request came in behind the work: finish the work, then stop
            self._commit(conn, writes)
            self._fail_queued(BackendError("the SQLite bus is closed", backend="sqlite"))
            return False
        self._commit(conn, writes)
        return True

    def _commit(self, conn: sqlite3.Connection, writes: list[_Job]) -> None:
        """Run ``writes`` in one transaction, each in a savepoint; settle their futures
        once it committed (or failed)."""
        if not writes:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                results = [self._savepoint(conn, job) for job in writes]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            error = self.translate(exc)
            for job in writes:
                if job.done.running():
                    job.done.set_exception(error)
                else:
                    _fail(job, error)
            return
        for job, (result, failure) in zip(writes, results, strict=True):
            if not job.done.running():
                continue  # cancelled before it ran
            if failure is not None:
                job.done.set_exception(failure)
            else:
                job.done.set_result(result)

    def _savepoint(self, conn: sqlite3.Connection, job: _Job) -> tuple[Any, BaseException | None]:
        """Run one write in a savepoint: a failure rolls back that write alone."""
        if not job.done.set_running_or_notify_cancel():
            return None, None
        conn.execute("SAVEPOINT job")
        try:
            result = job.fn(conn)
        except BaseException as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return None, self._error(exc)
        conn.execute("RELEASE job")
        return result, None

    def _fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _fail(job, error)

    def _error(self, exc: BaseException) -> BaseException:
        return self.translate(exc) if isinstance(exc, sqlite3.Error) else exc

    def translate(self, exc: sqlite3.Error) -> BackendError:
        """A :class:`BackendError` for a ``sqlite3`` error on this file."""
        message = f"SQLite bus {str(self.path)!r}: {type(exc).__name__}: {exc}"
        if isinstance(exc, sqlite3.OperationalError) and (
            "unable to open" in str(exc) or "locked" in str(exc) or "busy" in str(exc)
        ):
            return BackendUnavailable(message, backend="sqlite")
        return BackendError(message, backend="sqlite")


def _settle(job: _Job, conn: sqlite3.Connection, db: SQLiteFile) -> None:
    """Run a read and settle its future."""
    if not job.done.set_running_or_notify_cancel():
        return
    try:
        result = job.fn(conn)
    except BaseException as exc:
        job.done.set_exception(db._error(exc))
    else:
        job.done.set_result(result)


def _back_to(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any], done: Future[Any]
) -> None:
    """Settle a loop's future from the thread's (on the loop, unless it is gone)."""

    def settle() -> None:
        if waiter.cancelled():
            return
        error = done.exception()
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    if not loop.is_closed():
        loop.call_soon_threadsafe(settle)


def _fail(job: _Job, error: BaseException) -> None:
    if job.done.set_running_or_notify_cancel():
        job.done.set_exception(error)
