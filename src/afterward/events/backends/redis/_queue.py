""":class:`RedisQueue`: the work queue and the failed-jobs store on Redis.

It is also a :class:`~afterward.events._work_queue.JobLedger` (``claim``,
``due_delayed``, ``mark_ready``): the per-job marks of a Kafka bus whose state store is
this Redis. Every write is one Lua script (``scripts/queue_*.lua``, sharing
``_queue_lib.lua``), so it is atomic however many workers on however many machines
share the queue; the keys and encodings are in ``_queue_codec.py``, the layout in
:mod:`afterward.events.backends.redis`.

Clocks: due times arrive as POSIX seconds from the dispatching (or retrying) machine's
clock, while whether a job is due yet and whether a lease ran out are decided by the
Redis server's clock (``TIME`` in the scripts). Leases therefore never depend on the
workers' clocks agreeing; a dispatcher whose clock is off by a second shifts its own
jobs' due times by that second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from afterward.events._protocols import ConnectContext
from afterward.events._records import QueueDepth, QueuedJob, Reservation, StoredFailedJob
from afterward.events.backends.redis import _queue_codec as codec
from afterward.events.backends.redis import _scripts
from afterward.events.backends.redis._client import RedisClients

__all__ = ["BATCH", "RedisQueue"]

#: Due jobs and expired leases a reservation handles at most, each: a script never
#: holds Redis long, whatever piled up (the next reservation goes on).
BATCH = 1000

#: Failed jobs read per pipeline when listing them.
_CHUNK = 500


class RedisQueue(ConnectContext):
    """The ``queue`` job connection's store on a Redis bus (see the module docstring).

    Args:
        clients: the bus's clients, shared with its :class:`~._log.RedisLog` (which
            opens and closes them: :meth:`connect` and :meth:`aclose` do nothing).
    """

    scheme = "redis"

    def __init__(self, clients: RedisClients) -> None:
        self._clients = clients
        self._errors = clients.errors
        self._keys = codec.QueueKeys(clients.keys.prefix)
        self._prefix = clients.keys.prefix

    async def connect(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def _run(self, doing: str, script: _scripts.Script, keys: list[str], *args: Any) -> Any:
        async with self._errors(doing):
            return await self._clients.script(script, keys, [self._prefix, *args])

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        if not jobs:
            return
        args = [field for job in jobs for field in codec.job_fields(job)]
        keys = [self._keys.queues, self._keys.seq]
        await self._run("enqueueing jobs", _scripts.QUEUE_ENQUEUE, keys, *args)

    async def reserve(self, queue: str, worker: str, limit: int, lease: float) -> list[Reservation]:
        return (await self.reserve_counting(queue, worker, limit, lease))[2]

    async def reserve_counting(
        self, queue: str, worker: str, limit: int, lease: float
    ) -> tuple[int, int, list[Reservation]]:
        """:meth:`reserve`, also returning how many delayed jobs it made due and how many
        expired leases it handled (each at most :data:`BATCH`)."""
        made_due, expired, *rows = await self._run(
            f"reserving jobs of {queue!r}",
            _scripts.QUEUE_RESERVE,
            list(self._keys.of(queue)),
            queue,
            worker,
            limit,
            repr(lease),
            BATCH,
            codec.DIED,
        )
        return int(made_due), int(expired), _reservations(rows, queue)

    async def claim(
        self, queue: str, worker: str, job_ids: Sequence[str], limit: int, lease: float
    ) -> tuple[list[Reservation], set[str]]:
        """:meth:`reserve` among ``job_ids`` only (a Kafka bus's job marks: see
        :class:`~afterward.events._work_queue.JobLedger`)."""
        if not job_ids:
            return [], set()
        keys = list(self._keys.of(queue))
        count, *rows = await self._run(
            f"leasing jobs of {queue!r} by ID",
            _scripts.QUEUE_CLAIM,
            keys,
            queue,
            worker,
            limit,
            repr(lease),
            codec.DIED,
            *job_ids,
        )
        settled = {job_id.decode() for job_id in rows[:count]}
        return _reservations(rows[count:], queue), settled

    async def due_delayed(self, queue: str, limit: int) -> list[QueuedJob]:
        delayed = self._keys.of(queue).delayed
        doing = f"reading the due jobs of {queue!r}"
        rows = await self._run(doing, _scripts.QUEUE_DUE, [delayed], queue, limit)
        return [
            codec.job(rows[i + 1 : i + 6], rows[i].decode(), queue) for i in range(0, len(rows), 6)
        ]

    async def mark_ready(self, queue: str, job_ids: Sequence[str]) -> None:
        if job_ids:
            delayed = self._keys.of(queue).delayed
            doing = f"making due jobs of {queue!r} ready"
            await self._run(doing, _scripts.QUEUE_MARK_READY, [delayed], queue, *job_ids)

    async def extend(
        self, queue: str, worker: str, job_ids: Sequence[str], lease: float
    ) -> set[str]:
        if not job_ids:
            return set()
        running = self._keys.of(queue).running
        kept = await self._run(
            f"renewing leases on {queue!r}",
            _scripts.QUEUE_EXTEND,
            [running],
            queue,
            worker,
            repr(lease),
            *job_ids,
        )
        return {job_id.decode() for job_id in kept}

    async def ack(self, queue: str, worker: str, job_id: str) -> bool:
        running = self._keys.of(queue).running
        doing = f"acknowledging a job of {queue!r}"
        return bool(await self._run(doing, _scripts.QUEUE_ACK, [running], queue, worker, job_id))

    async def retry(self, queue: str, worker: str, job_id: str, due: float, payload: bytes) -> bool:
        delayed = self._keys.of(queue).delayed
        args = [queue, worker, job_id, repr(due), codec.due_key(due), payload]
        doing = f"retrying a job of {queue!r}"
        return bool(await self._run(doing, _scripts.QUEUE_RETRY, [delayed], *args))

    async def fail(self, queue: str, worker: str, failed: StoredFailedJob) -> bool:
        args = [
            queue,
            worker,
            failed.job.id,
            failed.job.payload,
            failed.attempts,
            failed.error,
            failed.traceback,
            repr(failed.failed_at.timestamp()),
        ]
        failed_set = self._keys.of(queue).failed
        doing = f"failing a job of {queue!r}"
        return bool(await self._run(doing, _scripts.QUEUE_FAIL, [failed_set], *args))

    async def release(self, queue: str, worker: str, job_ids: Sequence[str]) -> None:
        if job_ids:
            running = self._keys.of(queue).running
            doing = f"handing jobs of {queue!r} back"
            await self._run(doing, _scripts.QUEUE_RELEASE, [running], queue, worker, *job_ids)

    async def depth(self, queue: str | None) -> dict[str, QueueDepth]:
        names = [] if queue is None else [queue]
        rows = await self._run(
            "reading queue depths", _scripts.QUEUE_DEPTH, [self._keys.queues], *names
        )
        found: dict[str, QueueDepth] = {}
        at = 0
        while at < len(rows):
            name, ready, delayed, running, failed, count = rows[at : at + 6]
            pairs = rows[at + 6 : at + 6 + 2 * count]
            workers = {pairs[i].decode(): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
            found[name.decode()] = QueueDepth(ready, delayed, running, failed, workers)
            at += 6 + 2 * count
        return found

    # -- failed jobs ------------------------------------------------------------------

    async def failed_jobs(self, queue: str | None) -> list[StoredFailedJob]:
        """Every failed job, oldest first (read in pipelines: no script holds Redis)."""
        async with self._errors("listing failed jobs"):
            client = self._clients.get()
            if queue is None:
                names: Any = await client.smembers(self._keys.queues)
                queues = sorted(name.decode() for name in names)
            else:
                queues = [queue]
            ids: list[bytes] = []
            for name in queues:
                found: Any = await client.zrange(self._keys.of(name).failed, 0, -1)
                ids += found
            rows: list[Any] = []
            for start in range(0, len(ids), _CHUNK):
                async with client.pipeline(transaction=False) as pipe:
                    for job_id in ids[start : start + _CHUNK]:
                        pipe.hgetall(self._keys.job(job_id.decode()))
                    rows += await pipe.execute()
        # A job requeued or deleted meanwhile is gone or no longer failed: skipped.
        kept = [row for row in rows if row.get(b"state") == b"failed"]
        kept.sort(key=lambda row: (float(row[b"failed_at"]), row[b"seq"]))
        return [codec.failed(row) for row in kept]

    async def failed_job(self, job_id: str) -> StoredFailedJob | None:
        async with self._errors("reading a failed job"):
            row: Any = await self._clients.get().hgetall(self._keys.job(job_id))
        return codec.failed(row) if row.get(b"state") == b"failed" else None

    async def requeue_failed_job(self, job_id: str, job: QueuedJob) -> bool:
        keys = [self._keys.queues, self._keys.seq]
        args = [job_id, *codec.job_fields(job)]
        return bool(await self._run("requeueing a failed job", _scripts.QUEUE_REQUEUE, keys, *args))

    async def delete_failed_job(self, job_id: str) -> bool:
        keys = [self._keys.queues]
        return bool(await self._run("deleting a failed job", _scripts.QUEUE_DELETE, keys, job_id))


def _reservations(rows: Sequence[Any], queue: str) -> list[Reservation]:
    """The reservations of a script's reply: per job, its ID, five fields, its attempt."""
    return [
        Reservation(codec.job(rows[i + 1 : i + 6], rows[i].decode(), queue), int(rows[i + 6]))
        for i in range(0, len(rows), 7)
    ]
