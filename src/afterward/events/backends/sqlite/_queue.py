"""The SQLite work queue: :class:`SQLiteQueue`, on the same file (and thread) as the log.

Each primitive is one function of :mod:`._jobs` run by :class:`~._db.SQLiteFile`. It is
also a :class:`~afterward.events._work_queue.JobLedger`: the per-job marks of a Kafka
bus whose state store is this file.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from afterward.events._protocols import ConnectContext
from afterward.events._records import QueueDepth, QueuedJob, Reservation, StoredFailedJob
from afterward.events.backends.sqlite import _jobs
from afterward.events.backends.sqlite._db import SQLiteFile

__all__ = ["SQLiteQueue"]

_call = functools.partial


class SQLiteQueue(ConnectContext):
    """Jobs in the ``afterward_jobs`` table of a bus's SQLite file.

    Args:
        db: the file, shared with the log.
    """

    scheme = "sqlite"

    def __init__(self, db: SQLiteFile) -> None:
        self._db = db

    async def connect(self) -> None:
        await self._db.connect()

    async def aclose(self) -> None:
        await self._db.aclose()

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        await self._db.write(_call(_jobs.enqueue, jobs=jobs))

    async def reserve(self, queue: str, worker: str, limit: int, lease: float) -> list[Reservation]:
        # Inline like ack: no thread hop for the one write a reservation is.
        return await self._db.write(
            _call(_jobs.reserve, queue=queue, worker=worker, limit=limit, lease=lease)
        )

    async def extend(
        self, queue: str, worker: str, job_ids: Sequence[str], lease: float
    ) -> set[str]:
        return await self._db.run(
            _call(_jobs.extend, queue=queue, worker=worker, job_ids=job_ids, lease=lease),
            write=True,
        )

    async def ack(self, queue: str, worker: str, job_id: str) -> bool:
        # Inline and coalesced like appends: a worker's slots finishing together share
        # one commit.
        return await self._db.write(_call(_jobs.ack, queue=queue, worker=worker, job_id=job_id))

    async def retry(self, queue: str, worker: str, job_id: str, due: float, payload: bytes) -> bool:
        return await self._db.run(
            _call(_jobs.retry, queue=queue, worker=worker, job_id=job_id, due=due, payload=payload),
            write=True,
        )

    async def fail(self, queue: str, worker: str, failed: StoredFailedJob) -> bool:
        return await self._db.run(
            _call(_jobs.fail, queue=queue, worker=worker, failed=failed), write=True
        )

    async def release(self, queue: str, worker: str, job_ids: Sequence[str]) -> None:
        await self._db.run(
            _call(_jobs.release, queue=queue, worker=worker, job_ids=job_ids), write=True
        )

    async def claim(
        self, queue: str, worker: str, job_ids: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Reservation], set[str]]:
        if not job_ids:
            return [], set()
        return await self._db.run(
            _call(
                _jobs.claim, queue=queue, worker=worker, job_ids=job_ids, limit=limit, lease=lease
            ),
            write=True,
        )

    async def due_delayed(self, queue: str, limit: int) -> list[QueuedJob]:
        return await self._db.run(_call(_jobs.due_delayed, queue=queue, limit=limit))

    async def mark_ready(self, queue: str, job_ids: Sequence[str]) -> None:
        if job_ids:
            await self._db.run(_call(_jobs.mark_ready, queue=queue, job_ids=job_ids), write=True)

    async def depth(self, queue: str | None) -> dict[str, QueueDepth]:
        return await self._db.run(_call(_jobs.depth, queue=queue))

    async def failed_jobs(self, queue: str | None) -> list[StoredFailedJob]:
        return await self._db.run(_call(_jobs.failed_jobs, queue=queue))

    async def failed_job(self, job_id: str) -> StoredFailedJob | None:
        return await self._db.run(_call(_jobs.failed_job, job_id=job_id))

    async def requeue_failed_job(self, job_id: str, job: QueuedJob) -> bool:
        return await self._db.run(_call(_jobs.requeue_failed, job_id=job_id, job=job), write=True)

    async def delete_failed_job(self, job_id: str) -> bool:
        return await self._db.run(_call(_jobs.delete_failed, job_id=job_id), write=True)
