"""The memory backend's work queue: the reference implementation of
:class:`~afterward.events._protocols.WorkQueue`,
:class:`~afterward.events._protocols.FailedJobStore` and
:class:`~afterward.events._work_queue.JobLedger`.

Every job is one :class:`~._log.JobEntry` in the store, found by ID; a reservation
scans the queue's entries (fine for a test double; the server backends index by state).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from afterward.events._protocols import ConnectContext
from afterward.events._records import (
    QueueDepth,
    QueuedJob,
    Reservation,
    StoredFailedJob,
    worker_died,
)
from afterward.events.backends.memory._log import JobEntry, Store

__all__ = ["MemoryQueue"]

_seq = itertools.count()


class MemoryQueue(ConnectContext):
    """Jobs in this process's memory (see the module docstring)."""

    scheme = "memory"

    def __init__(self, store: Store) -> None:
        self._store = store

    async def connect(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _held(self, queue: str, worker: str, job_id: str) -> JobEntry | None:
        entry = self._store.jobs.get(job_id)
        if (
            entry is None
            or entry.job.queue != queue
            or entry.state != "running"
            or entry.worker != worker
        ):
            return None
        return entry

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        now = time.time()
        for job in jobs:
            if job.id not in self._store.jobs:
                entry = JobEntry(job, next(_seq), "delayed" if job.due > now else "ready")
                self._store.jobs[job.id] = entry

    @staticmethod
    def _catch_up(entry: JobEntry, now: float) -> None:
        """A due job becomes ready; an expired lease makes its job ready again, or
        failed when that delivery was the job's last try."""
        if entry.state == "delayed" and entry.job.due <= now:
            entry.state = "ready"
        elif entry.state == "running" and entry.lease_until <= now:
            entry.worker = None
            if entry.attempts >= entry.job.tries:
                entry.state = "failed"
                entry.failure = StoredFailedJob(
                    entry.job,
                    entry.attempts,
                    worker_died(entry.attempts, entry.job.tries),
                    "",
                    datetime.now(UTC),
                )
            else:
                entry.state = "ready"

    @staticmethod
    def _lease(ready: list[JobEntry], worker: str, limit: int, until: float) -> list[Reservation]:
        """Lease the best ``limit`` of ``ready`` to ``worker``, counting an attempt."""
        ready.sort(key=lambda e: (-e.job.priority, e.job.due, e.seq))
        taken = []
        for entry in ready[:limit]:
            entry.state = "running"
            entry.worker = worker
            entry.lease_until = until
            entry.attempts += 1
            taken.append(Reservation(entry.job, entry.attempts))
        return taken

    async def reserve(self, queue: str, worker: str, limit: int, lease: float) -> list[Reservation]:
        now = time.time()
        mine = [e for e in self._store.jobs.values() if e.job.queue == queue]
        for entry in mine:
            self._catch_up(entry, now)
        ready = [e for e in mine if e.state == "ready"]
        return self._lease(ready, worker, limit, now + lease)

    # -- the job ledger (a Kafka bus's job marks) -------------------------------------

    async def claim(
        self, queue: str, worker: str, job_ids: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Reservation], set[str]]:
        now = time.time()
        ready: list[JobEntry] = []
        settled: set[str] = set()
        for job_id in dict.fromkeys(job_ids):
            entry = self._store.jobs.get(job_id)
            if entry is None or entry.job.queue != queue:
                settled.add(job_id)
                continue
            self._catch_up(entry, now)
            if entry.state == "ready":
                ready.append(entry)
            elif entry.state != "running":
                settled.add(job_id)
        return self._lease(ready, worker, limit, now + lease), settled

    async def due_delayed(self, queue: str, limit: int) -> list[QueuedJob]:
        now = time.time()
        due = [
            e.job
            for e in self._store.jobs.values()
            if e.job.queue == queue and e.state == "delayed" and e.job.due <= now
        ]
        return sorted(due, key=lambda job: job.due)[:limit]

    async def mark_ready(self, queue: str, job_ids: Sequence[str]) -> None:
        now = time.time()
        for job_id in job_ids:
            entry = self._store.jobs.get(job_id)
            if entry is not None and entry.job.queue == queue and entry.state == "delayed":
                self._catch_up(entry, now)  # ready when due (a retried job may not be)

    async def extend(
        self, queue: str, worker: str, job_ids: Sequence[str], lease: float
    ) -> set[str]:
        now = time.time()
        kept = set()
        for job_id in job_ids:
            entry = self._held(queue, worker, job_id)
            if entry is not None and entry.lease_until > now:
                entry.lease_until = now + lease
                kept.add(job_id)
        return kept

    async def ack(self, queue: str, worker: str, job_id: str) -> bool:
        if self._held(queue, worker, job_id) is None:
            return False
        del self._store.jobs[job_id]
        return True

    async def retry(self, queue: str, worker: str, job_id: str, due: float, payload: bytes) -> bool:
        entry = self._held(queue, worker, job_id)
        if entry is None:
            return False
        entry.job = replace(entry.job, payload=payload, due=due)
        entry.state = "delayed" if due > time.time() else "ready"
        entry.worker = None
        return True

    async def fail(self, queue: str, worker: str, failed: StoredFailedJob) -> bool:
        entry = self._held(queue, worker, failed.job.id)
        if entry is None:
            return False
        entry.job = failed.job
        entry.state = "failed"
        entry.worker = None
        entry.failure = failed
        return True

    async def release(self, queue: str, worker: str, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            entry = self._held(queue, worker, job_id)
            if entry is not None:
                entry.state = "ready"
                entry.worker = None
                entry.attempts -= 1

    async def depth(self, queue: str | None) -> dict[str, QueueDepth]:
        now = time.time()
        found: dict[str, QueueDepth] = {}
        for entry in self._store.jobs.values():
            name = entry.job.queue
            if queue is not None and name != queue:
                continue
            depth = found.setdefault(name, QueueDepth())
            state = entry.state
            if state == "delayed" and entry.job.due <= now:
                state = "ready"
            if state == "running":
                assert entry.worker is not None
                depth.workers[entry.worker] = depth.workers.get(entry.worker, 0) + 1
            found[name] = replace(depth, **{state: getattr(depth, state) + 1})
        return found

    # -- failed jobs ------------------------------------------------------------------

    async def failed_jobs(self, queue: str | None) -> list[StoredFailedJob]:
        failed = [
            e.failure
            for e in self._store.jobs.values()
            if e.failure is not None
            and e.state == "failed"
            and (queue is None or e.job.queue == queue)
        ]
        return sorted(failed, key=lambda f: f.failed_at)

    async def failed_job(self, job_id: str) -> StoredFailedJob | None:
        entry = self._store.jobs.get(job_id)
        return entry.failure if entry is not None and entry.state == "failed" else None

    async def requeue_failed_job(self, job_id: str, job: QueuedJob) -> bool:
        entry = self._store.jobs.get(job_id)
        if entry is None or entry.state != "failed":
            return False
        del self._store.jobs[job_id]
        self._store.jobs[job.id] = JobEntry(job, next(_seq), "ready")
        return True

    async def delete_failed_job(self, job_id: str) -> bool:
        entry = self._store.jobs.get(job_id)
        if entry is None or entry.state != "failed":
            return False
        del self._store.jobs[job_id]
        return True
