"""The work queue's part of the backend seam: :class:`WorkQueue` and
:class:`FailedJobStore` (the durable ``queue`` job connection, see :mod:`._queue`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from afterward.events._protocols import Connectable
from afterward.events._records import QueueDepth, QueuedJob, Reservation, StoredFailedJob

__all__ = ["FailedJobStore", "JobLedger", "WorkQueue"]


@runtime_checkable
class WorkQueue(Connectable, Protocol):
    """Jobs waiting, due later, or leased to a worker: the ``queue`` job connection.

    A job is *delayed* until its ``due`` time, then *ready*; :meth:`reserve` leases
    ready jobs to one worker (highest ``priority`` first, then earliest due, then in
    enqueue order) and counts the attempt then, before the job runs. The worker renews
    its leases (:meth:`extend`) and ends each job with :meth:`ack`, :meth:`retry` or
    :meth:`fail`, or hands it back (:meth:`release`). A lease that runs out (a worker
    that died) makes the job ready again, or failed when that delivery used its last try.
    Every write is atomic and safe with any number of workers in any number of
    processes (and machines, for a server backend).
    """

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        """Add ``jobs`` (all or none); a job whose ID its queue holds already (waiting,
        running or failed) is left as it is."""

    async def reserve(self, queue: str, worker: str, limit: int, lease: float) -> list[Reservation]:
        """Lease up to ``limit`` ready jobs of ``queue`` to ``worker`` for ``lease``
        seconds, counting their attempt; jobs whose lease expired count as ready first
        (or move to the failed store if that was their last try: their worker died)."""

    async def extend(
        self, queue: str, worker: str, job_ids: Sequence[str], lease: float
    ) -> set[str]:
        """Renew ``worker``'s leases on ``job_ids`` for ``lease`` seconds; return the
        IDs it still holds (a lease that ran out may have gone to another worker)."""

    async def ack(self, queue: str, worker: str, job_id: str) -> bool:
        """The job succeeded: remove it. False when ``worker`` no longer held it."""

    async def retry(self, queue: str, worker: str, job_id: str, due: float, payload: bytes) -> bool:
        """The attempt failed with tries left: store ``payload`` (the next attempt's)
        and make the job due at ``due``. False when ``worker`` no longer held it."""

    async def fail(self, queue: str, worker: str, failed: StoredFailedJob) -> bool:
        """The last try failed: move the job to the failed store. False when ``worker``
        no longer held it."""

    async def release(self, queue: str, worker: str, job_ids: Sequence[str]) -> None:
        """Hand jobs back at once (a worker stopping): ready again, their attempt not
        counted."""

    async def depth(self, queue: str | None) -> dict[str, QueueDepth]:
        """Jobs per state, of ``queue`` or of every queue that has any."""


@runtime_checkable
class FailedJobStore(Protocol):
    """Jobs that used up their tries: listed, retried (requeued) or discarded."""

    async def failed_jobs(self, queue: str | None) -> list[StoredFailedJob]:
        """Every failed job (of ``queue`` when given), oldest first."""

    async def failed_job(self, job_id: str) -> StoredFailedJob | None:
        """The failed job with that ID, or ``None``."""

    async def requeue_failed_job(self, job_id: str, job: QueuedJob) -> bool:
        """Atomically replace the failed job ``job_id`` by ``job`` (ready, no attempts
        counted). False when there was no such failed job."""

    async def delete_failed_job(self, job_id: str) -> bool:
        """Delete the failed job; false when there was none."""


@runtime_checkable
class JobLedger(WorkQueue, FailedJobStore, Protocol):
    """A work queue that also leases jobs by ID: the per-job marks of a queue whose
    jobs travel on another log (Kafka's work queue keeps them in its state store).

    Its rows are the work queue's (state, due time, attempts, lease, payload, failure);
    the log only says which jobs a worker may look at. A delayed job whose due time
    came stays delayed until :meth:`mark_ready` (it is published to the log first), but
    :meth:`claim` and :meth:`depth` count it as ready already.
    """

    async def claim(
        self, queue: str, worker: str, job_ids: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Reservation], set[str]]:
        """Lease up to ``limit`` of ``job_ids`` to ``worker`` (as :meth:`reserve` does,
        among those IDs only, in the same order), counting their attempt; an expired
        lease on its last try fails the job instead (its worker died).

        Returns:
            The reservations, and the IDs there is nothing more to do with here: gone
            (done), failed, or delayed until later (published again when due).
        """

    async def due_delayed(self, queue: str, limit: int) -> list[QueuedJob]:
        """Up to ``limit`` delayed jobs of ``queue`` whose due time came, earliest first."""

    async def mark_ready(self, queue: str, job_ids: Sequence[str]) -> None:
        """The delayed jobs ``job_ids``, due by now, were published: they are ready."""
