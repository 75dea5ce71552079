"""The SQLite work queue's SQL: one ``afterward_jobs`` row per job, as functions of a
connection (writes run in a ``BEGIN IMMEDIATE`` transaction, so a reservation is one
atomic write however many worker processes share the file).

The per-ID primitives (:func:`claim`, :func:`due_delayed`, :func:`mark_ready`) make the
table the job ledger of a Kafka bus whose state store is this file.

A row's ``state`` is ``delayed`` (``due`` in the future), ``ready``, ``running`` (leased
to ``worker`` until ``lease_until``) or ``failed``. Partial indexes keep each lookup a
range scan: ready jobs by priority then order, delayed ones by due time, running ones
by lease, so 10,000 jobs delayed by an hour cost a due job nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from afterward.events._records import (
    QueueDepth,
    QueuedJob,
    Reservation,
    StoredFailedJob,
    worker_died,
)

__all__ = [
    "JOBS_SCHEMA",
    "ack",
    "claim",
    "delete_failed",
    "depth",
    "due_delayed",
    "enqueue",
    "extend",
    "fail",
    "failed_job",
    "failed_jobs",
    "mark_ready",
    "release",
    "requeue_failed",
    "reserve",
    "retry",
]

JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS afterward_jobs (
    seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,
    priority INTEGER NOT NULL, due REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    tries INTEGER NOT NULL, worker TEXT, lease_until REAL, payload BLOB NOT NULL,
    cid TEXT, error TEXT, traceback TEXT, failed_at REAL, UNIQUE (id));
CREATE INDEX IF NOT EXISTS afterward_jobs_ready
    ON afterward_jobs (queue, priority DESC, due, seq) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS afterward_jobs_delayed
    ON afterward_jobs (queue, due) WHERE state = 'delayed';
CREATE INDEX IF NOT EXISTS afterward_jobs_running
    ON afterward_jobs (queue, lease_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS afterward_jobs_failed
    ON afterward_jobs (queue, failed_at) WHERE state = 'failed';
"""

_COLUMNS = "seq, queue, id, payload, due, priority, tries, cid, attempts"


def _job(row: Sequence[Any]) -> QueuedJob:
    _, queue, id_, payload, due, priority, tries, cid, _ = row[:9]
    return QueuedJob(id_, queue, payload, due, priority, tries, cid)


def enqueue(conn: sqlite3.Connection, jobs: Sequence[QueuedJob]) -> None:
    """Insert ``jobs``; an ID already there is left alone."""
    now = time.time()
    conn.executemany(
        "INSERT OR IGNORE INTO afterward_jobs (queue, id, state, priority, due, tries, "
        "payload, cid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                j.queue,
                j.id,
                "delayed" if j.due > now else "ready",
                j.priority,
                j.due,
                j.tries,
                j.payload,
                j.correlation_id,
            )
            for j in jobs
        ],
    )


def _catch_up(conn: sqlite3.Connection, queue: str, now: float) -> None:
    """Due jobs become ready; expired leases are ready again, or failed when that
    delivery was the job's last try (its worker died)."""
    conn.execute(
        "UPDATE afterward_jobs SET state = 'ready' "
        "WHERE queue = ? AND state = 'delayed' AND due <= ?",
        (queue, now),
    )
    expired = conn.execute(
        "SELECT seq, attempts, tries FROM afterward_jobs "
        "WHERE queue = ? AND state = 'running' AND lease_until <= ?",
        (queue, now),
    ).fetchall()
    for seq, attempts, tries in expired:
        _expire(conn, seq, attempts, tries, now)


def _expire(conn: sqlite3.Connection, seq: int, attempts: int, tries: int, now: float) -> bool:
    """A lease ran out: the job is ready again, or failed (returns true) when that
    delivery was its last try."""
    if attempts >= tries:
        conn.execute(
            "UPDATE afterward_jobs SET state = 'failed', worker = NULL, error = ?, "
            "traceback = '', failed_at = ? WHERE seq = ?",
            (worker_died(attempts, tries), now, seq),
        )
        return True
    conn.execute("UPDATE afterward_jobs SET state = 'ready', worker = NULL WHERE seq = ?", (seq,))
    return False


def reserve(
    conn: sqlite3.Connection, queue: str, worker: str, limit: int, lease: float
) -> list[Reservation]:
    """Lease up to ``limit`` ready jobs to ``worker``, counting their attempt."""
    now = time.time()
    _catch_up(conn, queue, now)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM afterward_jobs WHERE queue = ? AND state = 'ready' "
        "ORDER BY priority DESC, due, seq LIMIT ?",
        (queue, limit),
    ).fetchall()
    return _lease(conn, rows, worker, now + lease)


def _lease(
    conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], worker: str, until: float
) -> list[Reservation]:
    """Lease the jobs of ``rows`` (``_COLUMNS``) to ``worker``, counting an attempt."""
    conn.executemany(
        "UPDATE afterward_jobs SET state = 'running', worker = ?, lease_until = ?, "
        "attempts = attempts + 1 WHERE seq = ?",
        [(worker, until, row[0]) for row in rows],
    )
    return [Reservation(_job(row), row[8] + 1) for row in rows]


def claim(
    conn: sqlite3.Connection,
    queue: str,
    worker: str,
    job_ids: Sequence[str],
    limit: int,
    lease: float,
) -> tuple[list[Reservation], set[str]]:
    """Lease up to ``limit`` of ``job_ids`` (ready, due, or with an expired lease) to
    ``worker``; also return the IDs gone, failed or delayed until later."""
    now = time.time()
    rows: list[Sequence[Any]] = []
    unique = list(dict.fromkeys(job_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        rows += conn.execute(
            f"SELECT {_COLUMNS}, state, lease_until FROM afterward_jobs WHERE queue = ? "
            f"AND id IN ({', '.join('?' * len(chunk))})",
            (queue, *chunk),
        ).fetchall()
    settled = set(unique) - {row[2] for row in rows}  # done: acknowledged
    free = []
    for row in rows:
        state, lease_until, due = row[9], row[10], row[4]
        if state == "running" and lease_until <= now:
            if _expire(conn, row[0], row[8], row[6], now):
                settled.add(row[2])
                continue
            state = "ready"
        if state == "failed" or (state == "delayed" and due > now):
            settled.add(row[2])
        elif state != "running":
            free.append(row)
    free.sort(key=lambda row: (-row[5], row[4], row[0]))
    return _lease(conn, free[:limit], worker, now + lease), settled


def due_delayed(conn: sqlite3.Connection, queue: str, limit: int) -> list[QueuedJob]:
    """Delayed jobs whose due time came, earliest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM afterward_jobs WHERE queue = ? AND state = 'delayed' "
        "AND due <= ? ORDER BY due LIMIT ?",
        (queue, time.time(), limit),
    )
    return [_job(row) for row in rows]


def mark_ready(conn: sqlite3.Connection, queue: str, job_ids: Sequence[str]) -> None:
    """Delayed jobs due by now become ready (a job retried meanwhile stays delayed)."""
    now = time.time()
    conn.executemany(
        "UPDATE afterward_jobs SET state = 'ready' "
        "WHERE queue = ? AND id = ? AND state = 'delayed' AND due <= ?",
        [(queue, job_id, now) for job_id in job_ids],
    )


_HELD = "queue = ? AND id = ? AND state = 'running' AND worker = ?"


def extend(
    conn: sqlite3.Connection, queue: str, worker: str, job_ids: Sequence[str], lease: float
) -> set[str]:
    """Renew the leases ``worker`` still holds; return their IDs."""
    now = time.time()
    kept = set()
    for job_id in job_ids:
        cursor = conn.execute(
            f"UPDATE afterward_jobs SET lease_until = ? WHERE {_HELD} AND lease_until > ?",
            (now + lease, queue, job_id, worker, now),
        )
        if cursor.rowcount:
            kept.add(job_id)
    return kept


def ack(conn: sqlite3.Connection, queue: str, worker: str, job_id: str) -> bool:
    """Delete a job ``worker`` holds."""
    return (
        conn.execute(f"DELETE FROM afterward_jobs WHERE {_HELD}", (queue, job_id, worker)).rowcount
        == 1
    )


def retry(
    conn: sqlite3.Connection,
    queue: str,
    worker: str,
    job_id: str,
    due: float,
    payload: bytes,
) -> bool:
    """Store the next attempt's payload and due time; the lease is released."""
    state = "delayed" if due > time.time() else "ready"
    cursor = conn.execute(
        "UPDATE afterward_jobs SET state = ?, due = ?, payload = ?, worker = NULL, "
        f"lease_until = NULL WHERE {_HELD}",
        (state, due, payload, queue, job_id, worker),
    )
    return cursor.rowcount == 1


def fail(conn: sqlite3.Connection, queue: str, worker: str, failed: StoredFailedJob) -> bool:
    """Move a job ``worker`` holds to the failed store."""
    cursor = conn.execute(
        "UPDATE afterward_jobs SET state = 'failed', worker = NULL, lease_until = NULL, "
        "payload = ?, attempts = ?, error = ?, traceback = ?, failed_at = ? "
        f"WHERE {_HELD}",
        (
            failed.job.payload,
            failed.attempts,
            failed.error,
            failed.traceback,
            failed.failed_at.timestamp(),
            queue,
            failed.job.id,
            worker,
        ),
    )
    return cursor.rowcount == 1


def release(conn: sqlite3.Connection, queue: str, worker: str, job_ids: Sequence[str]) -> None:
    """Hand jobs back: ready at once, their attempt uncounted."""
    conn.executemany(
        "UPDATE afterward_jobs SET state = 'ready', worker = NULL, lease_until = NULL, "
        f"attempts = attempts - 1 WHERE {_HELD}",
        [(queue, job_id, worker) for job_id in job_ids],
    )


def depth(conn: sqlite3.Connection, queue: str | None) -> dict[str, QueueDepth]:
    """Jobs per state (a delayed job past its due time counts as ready)."""
    where, args = ("WHERE queue = ?", (queue,)) if queue is not None else ("", ())
    now = time.time()
    counts: dict[str, dict[str, int]] = {}
    workers: dict[str, dict[str, int]] = {}
    for name, state, due_now, worker, count in conn.execute(
        "SELECT queue, state, state = 'delayed' AND due <= ?, worker, COUNT(*) "
        f"FROM afterward_jobs {where} GROUP BY 1, 2, 3, 4",
        (now, *args),
    ):
        key = "ready" if due_now else state
        totals = counts.setdefault(name, {})
        totals[key] = totals.get(key, 0) + count
        if state == "running":
            workers.setdefault(name, {})[worker] = count
    return {
        name: QueueDepth(**totals, workers=workers.get(name, {})) for name, totals in counts.items()
    }


def _failed(row: Sequence[Any]) -> StoredFailedJob:
    *job, error, tb, failed_at = row
    return StoredFailedJob(_job(job), job[-1], error, tb, datetime.fromtimestamp(failed_at, UTC))


def failed_jobs(conn: sqlite3.Connection, queue: str | None) -> list[StoredFailedJob]:
    """Failed jobs, oldest first."""
    where, args = (" AND queue = ?", (queue,)) if queue is not None else ("", ())
    rows = conn.execute(
        f"SELECT {_COLUMNS}, error, traceback, failed_at FROM afterward_jobs "
        f"WHERE state = 'failed'{where} ORDER BY failed_at, seq",
        args,
    )
    return [_failed(row) for row in rows]


def failed_job(conn: sqlite3.Connection, job_id: str) -> StoredFailedJob | None:
    """The failed job with that ID."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, error, traceback, failed_at FROM afterward_jobs "
        "WHERE state = 'failed' AND id = ?",
        (job_id,),
    ).fetchone()
    return None if row is None else _failed(row)


def requeue_failed(conn: sqlite3.Connection, job_id: str, job: QueuedJob) -> bool:
    """Replace a failed job by ``job``, ready with no attempts."""
    if not delete_failed(conn, job_id):
        return False
    enqueue(conn, [job])
    return True


def delete_failed(conn: sqlite3.Connection, job_id: str) -> bool:
    """Delete a failed job."""
    cursor = conn.execute("DELETE FROM afterward_jobs WHERE state = 'failed' AND id = ?", (job_id,))
    return cursor.rowcount == 1
