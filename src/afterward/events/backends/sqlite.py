"""``sqlite:///path``: the embedded default backend, one file on this machine.

WAL mode, ``synchronous=NORMAL`` (durable across a killed process; ``FULL`` is not
needed for kill -9, only for power loss) and a busy timeout, so several processes can
publish and consume at once. Every primitive is one transaction run on a dedicated
thread with the stdlib ``sqlite3`` module: a primitive handles a whole batch, so the
thread hop is paid once per batch, not per event (which is why there is no aiosqlite).
Writers take the lock up front (``BEGIN IMMEDIATE``) so offsets are assigned without
races. One partition per topic.

It has the optional flow capability (:class:`~afterward.events._backend.FlowLog`):
``afterward_flow_events`` indexes events by correlation ID (written with them) and
``afterward_attempts`` keeps every group's attempts, indexed by correlation ID.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from afterward._exceptions import BackendError, BackendUnavailable, ConfigError
from afterward._threads import DaemonExecutor
from afterward.events._protocols import Backend, ConnectContext, StateStore
from afterward.events._records import AppendRecord, Attempt, Done, StoredDeadLetter, StoredEvent

__all__ = ["SQLiteLog", "path_of"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS afterward_events (
    topic TEXT NOT NULL, off INTEGER NOT NULL, key TEXT, id TEXT NOT NULL,
    ts REAL NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (topic, off)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_positions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_processed (
    grp TEXT NOT NULL, id TEXT NOT NULL, topic TEXT NOT NULL,
    PRIMARY KEY (grp, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_versions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_claims (
    grp TEXT NOT NULL, topic TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (grp, topic)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_dead_letters (
    id TEXT PRIMARY KEY, grp TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
    error TEXT NOT NULL, traceback TEXT NOT NULL, attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS afterward_flow_events (
    cid TEXT NOT NULL, topic TEXT NOT NULL, off INTEGER NOT NULL,
    PRIMARY KEY (cid, topic, off)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS afterward_attempts (
    cid TEXT NOT NULL, at REAL NOT NULL, grp TEXT NOT NULL, topic TEXT NOT NULL,
    id TEXT NOT NULL, attempt INTEGER NOT NULL, outcome TEXT NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS afterward_attempts_cid ON afterward_attempts (cid, at);
"""


def path_of(url: str) -> Path:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ConfigError(f"SQLite bus URLs look like sqlite:///afterward.db, got {url!r}")
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def _chunks(items: Sequence[T], size: int = 500) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class SQLiteLog(ConnectContext):
    """An event log in one SQLite file. See the module docstring."""

    scheme = "sqlite"

    def __init__(self, url: str = "sqlite:///afterward.db") -> None:
        self.path = path_of(url)
        self._conn: sqlite3.Connection | None = None
        self._executor: DaemonExecutor | None = None
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    def _open_here(self) -> None:
        try:
            self._conn = self._open()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T], write: bool = False) -> T:
        if self._executor is None:
            await self.connect()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn, write))

    def _call(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        conn = self._conn
        if conn is None:
            raise BackendError("the SQLite bus is closed", backend="sqlite")
        try:
            if not write:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    async def connect(self) -> None:
        with self._lock:
            if self._executor is not None:
                return
            # One thread owns the connection; work queued behind the open sees it.
            # A daemon thread, unlike ThreadPoolExecutor's: it keeps working at
            # interpreter exit, when deferred jobs are handed to the queue.
            self._executor = DaemonExecutor(1, name="afterward-sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_here)
        except BaseException:
            executor, self._executor = self._executor, None
            _stop(executor)
            raise

    async def aclose(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is not None and conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            _stop(executor)

    # -- the log ----------------------------------------------------------------------

    async def append(self, records: Sequence[AppendRecord]) -> None:
        def append(conn: sqlite3.Connection) -> None:
            next_offset: dict[str, int] = {}
            rows = []
            for r in records:
                if r.topic not in next_offset:
                    (last,) = conn.execute(
                        "SELECT MAX(off) FROM afterward_events WHERE topic = ?", (r.topic,)
                    ).fetchone()
                    next_offset[r.topic] = -1 if last is None else last
                next_offset[r.topic] += 1
                rows.append(
                    (r.topic, next_offset[r.topic], r.key, r.event_id, r.timestamp, r.payload)
                )
            conn.executemany("INSERT INTO afterward_events VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.executemany(
                "INSERT OR IGNORE INTO afterward_flow_events VALUES (?, ?, ?)",
                [
                    (r.correlation_id, row[0], row[1])
                    for r, row in zip(records, rows, strict=True)
                    if r.correlation_id is not None
                ],
            )

        await self._run(append, write=True)

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        start = positions.get(0, 0)
        rows = await self._run(
            lambda c: c.execute(
                "SELECT off, payload FROM afterward_events WHERE topic = ? AND off >= ? "
                "ORDER BY off LIMIT ?",
                (topic, start, limit),
            ).fetchall()
        )
        return [StoredEvent(topic, 0, off, payload) for off, payload in rows]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        (last,) = await self._run(
            lambda c: c.execute(
                "SELECT MAX(off) FROM afterward_events WHERE topic = ?", (topic,)
            ).fetchone()
        )
        return {} if last is None else {0: last + 1}

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        def find(conn: sqlite3.Connection) -> dict[int, int]:
            row = conn.execute(
                "SELECT MIN(off) FROM afterward_events WHERE topic = ? AND ts >= ?",
                (topic, since.timestamp()),
            ).fetchone()
            if row[0] is not None:
                return {0: row[0]}
            (last,) = conn.execute(
                "SELECT MAX(off) FROM afterward_events WHERE topic = ?", (topic,)
            ).fetchone()
            return {0: 0 if last is None else last + 1}

        return await self._run(find)

    # -- groups -----------------------------------------------------------------------

    async def positions(self, group: str, topic: str) -> dict[int, int] | None:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT part, pos FROM afterward_positions WHERE grp = ? AND topic = ?",
                (group, topic),
            ).fetchall()
        )
        return dict(rows) if rows else None

    async def register(self, group: str, topic: str, positions: Mapping[int, int]) -> None:
        def register(conn: sqlite3.Connection) -> None:
            exists = conn.execute(
                "SELECT 1 FROM afterward_positions WHERE grp = ? AND topic = ?", (group, topic)
            ).fetchone()
            if not exists:
                conn.executemany(
                    "INSERT INTO afterward_positions VALUES (?, ?, ?, ?)",
                    [(group, topic, p, o) for p, o in (dict(positions) or {0: 0}).items()],
                )

        await self._run(register, write=True)

    async def groups(self) -> dict[str, list[str]]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT DISTINCT grp, topic FROM afterward_positions ORDER BY grp, topic"
            ).fetchall()
        )
        found: dict[str, list[str]] = {}
        for group, topic in rows:
            found.setdefault(group, []).append(topic)
        return found

    async def claim(self, group: str, topic: str, owner: str, ttl: float) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = conn.execute(
                "INSERT INTO afterward_claims VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, topic) DO UPDATE SET owner = excluded.owner, "
                "expires = excluded.expires "
                "WHERE afterward_claims.owner = excluded.owner OR afterward_claims.expires < ?",
                (group, topic, owner, now + ttl, now),
            )
            return cursor.rowcount == 1

        return await self._run(claim, write=True)

    async def release(self, group: str, topic: str, owner: str) -> None:
        await self._run(
            lambda c: c.execute(
                "DELETE FROM afterward_claims WHERE grp = ? AND topic = ? AND owner = ?",
                (group, topic, owner),
            ),
            write=True,
        )

    async def commit(
        self, group: str, topic: str, positions: Mapping[int, int], done: Sequence[Done]
    ) -> None:
        def commit(conn: sqlite3.Connection) -> None:
            _set_positions(conn, group, topic, positions)
            conn.executemany(
                "INSERT OR IGNORE INTO afterward_processed VALUES (?, ?, ?)",
                [(group, d.event_id, topic) for d in done if d.processed],
            )
            conn.executemany(
                "INSERT INTO afterward_versions VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, topic, key) DO UPDATE SET version = excluded.version "
                "WHERE excluded.version > afterward_versions.version",
                [
                    (group, topic, d.key, d.version)
                    for d in done
                    if d.key is not None and d.version is not None
                ],
            )

        await self._run(commit, write=True)

    async def processed(self, group: str, event_ids: Sequence[str]) -> set[str]:
        def find(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(event_ids):
                marks = ",".join("?" * len(chunk))
                found.update(
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM afterward_processed WHERE grp = ? AND id IN ({marks})",
                        (group, *chunk),
                    )
                )
            return found

        return await self._run(find) if event_ids else set()

    async def key_versions(self, group: str, topic: str, keys: Sequence[str]) -> dict[str, int]:
        def find(conn: sqlite3.Connection) -> dict[str, int]:
            found: dict[str, int] = {}
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                found.update(
                    conn.execute(
                        "SELECT key, version FROM afterward_versions "
                        f"WHERE grp = ? AND topic = ? AND key IN ({marks})",
                        (group, topic, *chunk),
                    ).fetchall()
                )
            return found

        return await self._run(find) if keys else {}

    async def rewind(
        self, group: str, topic: str, positions: Mapping[int, int], *, forget: bool
    ) -> None:
        def rewind(conn: sqlite3.Connection) -> None:
            _set_positions(conn, group, topic, positions)
            if forget:
                for table in ("afterward_processed", "afterward_versions"):
                    conn.execute(f"DELETE FROM {table} WHERE grp = ? AND topic = ?", (group, topic))

        await self._run(rewind, write=True)

    # -- dead letters -----------------------------------------------------------------

    async def add_dead_letter(self, letter: StoredDeadLetter) -> None:
        await self.update_dead_letter(letter)

    async def dead_letters(self, group: str | None) -> list[StoredDeadLetter]:
        sql = "SELECT * FROM afterward_dead_letters"
        args: tuple[Any, ...] = ()
        if group is not None:
            sql, args = sql + " WHERE grp = ?", (group,)
        rows = await self._run(lambda c: c.execute(sql + " ORDER BY failed_at", args).fetchall())
        return [_letter(row) for row in rows]

    async def dead_letter(self, letter_id: str) -> StoredDeadLetter | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT * FROM afterward_dead_letters WHERE id = ?", (letter_id,)
            ).fetchone()
        )
        return None if row is None else _letter(row)

    async def update_dead_letter(self, letter: StoredDeadLetter) -> None:
        row = (
            letter.id,
            letter.group,
            letter.topic,
            letter.payload,
            letter.error,
            letter.traceback,
            letter.attempts,
            letter.failed_at.timestamp(),
        )
        await self._run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO afterward_dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            ),
            write=True,
        )

    async def delete_dead_letter(self, letter_id: str) -> bool:
        cursor = await self._run(
            lambda c: c.execute("DELETE FROM afterward_dead_letters WHERE id = ?", (letter_id,)),
            write=True,
        )
        return cursor.rowcount == 1

    # -- flows (the optional FlowLog capability) --------------------------------------

    async def events_for(self, correlation_id: str, limit: int) -> Sequence[StoredEvent]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT e.topic, e.off, e.payload FROM afterward_flow_events f "
                "JOIN afterward_events e ON e.topic = f.topic AND e.off = f.off "
                "WHERE f.cid = ? ORDER BY e.ts, e.topic, e.off LIMIT ?",
                (correlation_id, limit),
            ).fetchall()
        )
        return [StoredEvent(topic, 0, off, payload) for topic, off, payload in rows]

    async def add_attempts(self, attempts: Sequence[Attempt]) -> None:
        rows = [
            (
                a.correlation_id,
                a.at.timestamp(),
                a.group,
                a.topic,
                a.event_id,
                a.attempt,
                a.outcome,
                a.error,
            )
            for a in attempts
        ]
        await self._run(
            lambda c: c.executemany(
                "INSERT INTO afterward_attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
            ),
            write=True,
        )

    async def attempts_for(self, correlation_id: str, limit: int) -> list[Attempt]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT cid, at, grp, topic, id, attempt, outcome, error FROM afterward_attempts "
                "WHERE cid = ? ORDER BY at, rowid LIMIT ?",
                (correlation_id, limit),
            ).fetchall()
        )
        return [
            Attempt(cid, grp, topic, id_, attempt, outcome, datetime.fromtimestamp(at, UTC), error)
            for cid, at, grp, topic, id_, attempt, outcome, error in rows
        ]


def _stop(executor: DaemonExecutor) -> None:
    executor._queue.put(None)  # its one thread returns once the queued work is done


def _set_positions(
    conn: sqlite3.Connection, group: str, topic: str, positions: Mapping[int, int]
) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO afterward_positions VALUES (?, ?, ?, ?)",
        [(group, topic, p, o) for p, o in positions.items()],
    )


def _letter(row: tuple[Any, ...]) -> StoredDeadLetter:
    id_, group, topic, payload, error, tb, attempts, failed_at = row
    return StoredDeadLetter(
        id=id_,
        group=group,
        topic=topic,
        payload=payload,
        error=error,
        traceback=tb,
        attempts=attempts,
        failed_at=datetime.fromtimestamp(failed_at, UTC),
    )


def _translate(exc: sqlite3.Error, path: Path) -> BackendError:
    message = f"SQLite bus {str(path)!r}: {type(exc).__name__}: {exc}"
    if isinstance(exc, sqlite3.OperationalError) and (
        "unable to open" in str(exc) or "locked" in str(exc) or "busy" in str(exc)
    ):
        return BackendUnavailable(message, backend="sqlite")
    return BackendError(message, backend="sqlite")


def open_backend(url: str, open_store: Callable[[str], StateStore]) -> Backend:
    """The backend of a ``sqlite://`` URL: the log is its own state store."""
    return Backend.of(SQLiteLog(url))
