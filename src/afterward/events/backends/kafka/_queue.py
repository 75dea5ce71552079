""":class:`KafkaQueue`: the work queue on Kafka, its per-job marks in the state store.

- **Ready jobs are records** on their queue's topic ``afterward.jobs.<queue>`` (created
  with ``queue_partitions`` partitions, 16 by default): the key is the job ID, the value
  its payload, headers ``afterward-id`` and ``afterward-priority``. The worker processes
  of a queue are one Kafka consumer group, ``afterward.worker.<queue>``, so the broker
  shares the topic's partitions among them (:mod:`._queue_member`): more workers, more
  throughput, up to one per partition.
- **Per-job marks are in the ledger**, the work queue of the state store (``store=``,
  :class:`~afterward.events._work_queue.JobLedger`): one row per job with its state,
  due time, priority, attempts, lease, the payload of its next attempt and its failure.
  A worker leases a job there (counting the attempt) before it runs it, renews the
  lease, and acknowledges it there: so a rebalance or a kill -9, which makes another
  member read the unfinished records again, repeats only unfinished jobs, and a job
  whose attempt killed its worker uses a try each time, then fails.
- **Delayed jobs are parked in the ledger** (``delay=``, ``at=``, a retry's backoff):
  not on the topic, so they hold no worker slot and no due job waits behind them. A
  reservation publishes the parked jobs that came due (one process at a time: it holds
  the state store's claim ``afterward.promote`` of the worker group), then marks them
  ready; a record published twice (a promoter killed in between) is harmless, the ledger
  leases a job once.
- **Priority** is exact among the due jobs a worker process has read (up to
  :data:`~._queue_member.ROOM` pending records of its partitions): higher first, then
  the earlier due, then the earlier enqueued. Kafka itself has no priorities: across
  worker processes, each orders the jobs of its own partitions, so a high-priority job
  on one process's partition does not overtake low-priority ones running on another.
- **Failed jobs** are the ledger's; ``queue stats`` (ready / delayed / running per
  worker / failed) is read from the ledger, exact whatever Kafka's lag says.

A job is written to the ledger first, then published: a dispatcher killed between the
two leaves a ready job nobody reads (dispatch inside a transaction, through the outbox,
to have the relay repeat it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

from afterward.events._protocols import ConnectContext, StateStore
from afterward.events._records import QueueDepth, QueuedJob, Reservation, StoredFailedJob
from afterward.events._work_queue import JobLedger
from afterward.events.backends._driver import DriverErrors
from afterward.events.backends.kafka._clients import KafkaClients
from afterward.events.backends.kafka._queue_member import (
    JOB_TOPIC,
    ROOM,
    WORKER_GROUP,
    QueueMember,
)

__all__ = ["KafkaQueue"]

#: The state store claim whose holder publishes a queue's parked jobs, and its TTL.
PROMOTE = "afterward.promote"
_PROMOTE_TTL = 5.0

_Key = tuple[asyncio.AbstractEventLoop, str]


class KafkaQueue(ConnectContext):
    """The ``queue`` job connection's store on a Kafka bus (see the module docstring).

    Args:
        clients: the bus's clients, shared with its :class:`~._log.KafkaLog`.
        errors: its error translation.
        ledger: the state store's work queue, which keeps the marks of every job.
        state: the state store (for the promoter's claim).
    """

    scheme = "kafka"

    def __init__(
        self, clients: KafkaClients, errors: DriverErrors, ledger: JobLedger, state: StateStore
    ) -> None:
        self._clients = clients
        self._settings = clients.settings
        self._errors = errors
        self._ledger = ledger
        self._state = state
        self._members: dict[_Key, QueueMember] = {}
        self._locks: dict[_Key, asyncio.Lock] = {}
        #: Per queue and partition, the end of what this process appended.
        self._appended: dict[str, dict[int, int]] = {}
        self._owner = f"promoter-{uuid.uuid4().hex}"
        self._promoting: set[str] = set()

    def __repr__(self) -> str:
        return f"<KafkaQueue {self._settings.bootstrap} ledger={self._ledger!r}>"

    async def connect(self) -> None:
        await self._ledger.connect()

    async def aclose(self) -> None:
        """Leave this loop's worker groups (committing), give the promoter claims back."""
        loop = asyncio.get_running_loop()
        for key in [key for key in self._members if key[0] is loop]:
            await self._members.pop(key).close()
        for queue in self._promoting:
            await self._state.release(WORKER_GROUP + queue, PROMOTE, self._owner)
        self._promoting.clear()
        await self._ledger.aclose()

    # -- publishing -------------------------------------------------------------------

    async def _append(self, jobs: Sequence[QueuedJob]) -> None:
        """Publish ``jobs`` to their queue topics; remember where they went."""
        if not jobs:
            return
        for topic in {JOB_TOPIC + job.queue for job in jobs}:
            await self._clients.partition_count(
                topic, create=True, partitions=self._settings.queue_partitions
            )
        conn = await self._clients.conn()
        async with self._errors("appending jobs"):
            sent = [
                await conn.producer.send(
                    self._settings.topic(JOB_TOPIC + job.queue),
                    job.payload,
                    key=job.id.encode(),
                    headers=[
                        ("afterward-id", job.id.encode()),
                        ("afterward-priority", str(job.priority).encode()),
                    ],
                )
                for job in jobs
            ]
            placed = await asyncio.gather(*sent)
        for job, meta in zip(jobs, placed, strict=True):
            ends = self._appended.setdefault(job.queue, {})
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)

    async def _promote(self, queue: str) -> None:
        """Publish the parked jobs of ``queue`` that came due, if this process holds
        the promoter claim."""
        due = await self._ledger.due_delayed(queue, ROOM)
        if not due:
            return
        if not await self._state.claim(WORKER_GROUP + queue, PROMOTE, self._owner, _PROMOTE_TTL):
            return
        self._promoting.add(queue)
        await self._append(due)
        await self._ledger.mark_ready(queue, [job.id for job in due])

    def _settle(self, queue: str, job_ids: Sequence[str]) -> None:
        member = self._members.get((asyncio.get_running_loop(), queue))
        if member is not None:
            member.settle(job_ids)

    # -- the work queue ---------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        """Write ``jobs`` to the ledger, then publish the ones due now (the others are
        parked there until due)."""
        await self._ledger.enqueue(jobs)
        now = time.time()
        await self._append([job for job in jobs if job.due <= now])

    async def _joined(self, key: _Key) -> QueueMember:
        member = self._members.get(key)
        if member is None:
            queue = key[1]
            await self._clients.partition_count(
                JOB_TOPIC + queue, create=True, partitions=self._settings.queue_partitions
            )
            member = QueueMember(self._settings, self._errors, queue)
            await member.start()
            self._members[key] = member
        return member

    async def reserve(self, queue: str, worker: str, limit: int, lease: float) -> list[Reservation]:
        """Publish the parked jobs that came due, read this member's partitions, then
        lease the best ``limit`` of the jobs read that are ready in the ledger."""
        key = (asyncio.get_running_loop(), queue)
        async with self._locks.setdefault(key, asyncio.Lock()):
            member = await self._joined(key)
            await self._promote(queue)
            await member.fetch(self._appended.get(queue, {}))
            taken, settled = await self._ledger.claim(queue, worker, member.job_ids(), limit, lease)
            member.settle(settled)
            await member.commit()
            return taken

    async def extend(
        self, queue: str, worker: str, job_ids: Sequence[str], lease: float
    ) -> set[str]:
        return await self._ledger.extend(queue, worker, job_ids, lease)

    async def ack(self, queue: str, worker: str, job_id: str) -> bool:
        done = await self._ledger.ack(queue, worker, job_id)
        self._settle(queue, [job_id])
        return done

    async def retry(self, queue: str, worker: str, job_id: str, due: float, payload: bytes) -> bool:
        """Store the next attempt; due later, the job is parked (its record settled)."""
        kept = await self._ledger.retry(queue, worker, job_id, due, payload)
        if kept and due > time.time():
            self._settle(queue, [job_id])
        return kept

    async def fail(self, queue: str, worker: str, failed: StoredFailedJob) -> bool:
        moved = await self._ledger.fail(queue, worker, failed)
        self._settle(queue, [failed.job.id])
        return moved

    async def release(self, queue: str, worker: str, job_ids: Sequence[str]) -> None:
        """Ready again in the ledger; the records stay unsettled, so the next reader of
        their partitions (this process, or another once it left the group) runs them."""
        await self._ledger.release(queue, worker, job_ids)

    async def depth(self, queue: str | None) -> dict[str, QueueDepth]:
        return await self._ledger.depth(queue)

    # -- failed jobs ------------------------------------------------------------------

    async def failed_jobs(self, queue: str | None) -> list[StoredFailedJob]:
        return await self._ledger.failed_jobs(queue)

    async def failed_job(self, job_id: str) -> StoredFailedJob | None:
        return await self._ledger.failed_job(job_id)

    async def requeue_failed_job(self, job_id: str, job: QueuedJob) -> bool:
        if not await self._ledger.requeue_failed_job(job_id, job):
            return False
        if job.due <= time.time():
            await self._append([job])
        return True

    async def delete_failed_job(self, job_id: str) -> bool:
        return await self._ledger.delete_failed_job(job_id)
