"""A queue worker: competing for jobs, one lease per job, due times, graceful stops.

:class:`Worker` runs the jobs of one queue with up to ``concurrency`` at once. It
reserves only as many jobs as it has free slots (so a job it holds is a job it runs),
renews the leases of the jobs it runs every third of ``lease``, and ends each job on its
own: acknowledged when it succeeded, due again after its backoff when it failed with
tries left, moved to the failed jobs (after the job's ``failed()`` hook) on its last
try. A job that is not due holds no slot: it waits in the backend, not in the worker.

``stop()`` (SIGTERM, SIGINT) makes it reserve nothing more and wait up to ``grace``
seconds for the jobs it runs; those still running then are cancelled and handed back
at once (their attempt not counted), and :meth:`Worker.run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from afterward._exceptions import BackendError
from afterward._stats import incr
from afterward.events._core import BusCore
from afterward.events._handler import error_text
from afterward.events._job_wire import job_attempt, payload_of, queued_attempt
from afterward.events._queue import queue_of
from afterward.events._records import Attempt, QueueDepth, Reservation, StoredFailedJob
from afterward.events._work_queue import WorkQueue
from afterward.jobs import attempt, retry_delay, run_failed

__all__ = ["Worker", "worker_name"]

logger = logging.getLogger("afterward.jobs")


def worker_name() -> str:
    """A name no other worker has: host, PID and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs one queue's jobs (see the module docstring).

    Args:
        core: the bus's core (its backend has the work queue).
        queue: the queue.
        concurrency: jobs run at once.
        lease: seconds a job stays this worker's without renewal (another worker takes
            it after that if this one died).
        grace: seconds ``stop()`` waits for running jobs before handing them back.
        on_depth: called with the queue's depth whenever it changes (polled every
            second while running), e.g. the CLI's status line.
    """

    def __init__(
        self,
        core: BusCore,
        queue: str,
        *,
        concurrency: int = 4,
        lease: float = 30.0,
        grace: float = 30.0,
        on_depth: Callable[[QueueDepth], None] | None = None,
    ) -> None:
        self.core = core
        self.queue = queue
        self.concurrency = concurrency
        self.lease = lease
        self.grace = grace
        self.name = worker_name()
        self._on_depth = on_depth
        self._jobs: WorkQueue = queue_of(core)[0]
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Reserve nothing more; let running jobs finish within ``grace``, then return
        (safe from signal handlers on the worker's loop)."""
        self._stopping = True
        self._wake.set()

    async def run(self, *, stop_when_idle: bool = False) -> None:
        """Work until stopped (or, with ``stop_when_idle``, until the queue has nothing
        ready, delayed or running)."""
        waker = self.core.waker()  # a job enqueued by this process wakes us at once
        helpers = [asyncio.create_task(self._keep_leases())]
        if self._on_depth is not None:
            helpers.append(asyncio.create_task(self._watch_depth(self._on_depth)))
        try:
            pause = 0.0
            while not (self._stopping or self.core.stopping):
                waker.clear()
                try:
                    took = await self._fill()
                    if stop_when_idle and not self._running and not took and await self._idle():
                        return
                    pause = 0.0
                except BackendError as exc:
                    # The backend is away: log, back off (up to 5 s), try again. Jobs
                    # running now go on; their settling waits for the backend too.
                    pause = min(5.0, max(0.1, pause * 2))
                    logger.warning("queue %r: %s; trying again in %.1f s", self.queue, exc, pause)
                    await asyncio.sleep(pause)
                    continue
                await self._wait(waker, took)
            await self._finish()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.core.drop_waker(waker)
            if self._running:  # cancelled itself (a second signal): hand the jobs back
                await self._hand_back()

    async def _fill(self) -> int:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        got = await self._jobs.reserve(self.queue, self.name, free, self.lease)
        for reservation in got:
            job_id = reservation.job.id
            task = asyncio.create_task(self._run_one(reservation))
            self._running[job_id] = task
            task.add_done_callback(functools.partial(self._ended, job_id))
        return len(got)

    def _ended(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(job_id) is task:
            del self._running[job_id]
        if not task.cancelled() and task.exception() is not None:
            # Acknowledging failed (the backend is down): the lease runs out and the job
            # is delivered again. Its attempt already counted.
            logger.error("job %s could not be settled: %r", job_id, task.exception())
        self._wake.set()

    async def _idle(self) -> bool:
        depth = (await self._jobs.depth(self.queue)).get(self.queue)
        return depth is None or depth.ready + depth.delayed + depth.running == 0

    async def _wait(self, waker: asyncio.Event, took: int) -> None:
        """Until a slot frees up, a job is enqueued here, or it is time to look again."""
        self._wake.clear()
        if self.concurrency - len(self._running) > 0 and took:
            return  # slots left and jobs came: there may be more ready right now
        events = [asyncio.create_task(self._wake.wait()), asyncio.create_task(waker.wait())]
        full = len(self._running) >= self.concurrency
        try:
            await asyncio.wait(
                events,
                timeout=None if full else self.core.settings.poll_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for event in events:
                event.cancel()

    async def _run_one(self, reservation: Reservation) -> None:
        job = reservation.job
        payload = replace(payload_of(job.payload), attempt=reservation.attempt)
        started = datetime.now(UTC)
        error = await attempt(payload, self.queue)
        outcome = "handled"
        wait = None if error is None else retry_delay(payload, error)
        if error is None:
            done = await self._jobs.ack(self.queue, self.name, job.id)
        elif wait is not None:
            outcome = "failed"
            due = time.time() + wait
            following = replace(payload, attempt=payload.attempt + 1, available_at=due)
            done = await self._jobs.retry(
                self.queue, self.name, job.id, due, following.to_json().encode()
            )
            incr("jobs.retried")
        else:
            outcome = "dead_lettered"
            incr("jobs.failed")
            await run_failed(payload, error)
            failed = StoredFailedJob(
                replace(job, payload=payload.to_json().encode()),
                payload.attempt,
                error_text(error),
                "".join(traceback.format_exception(error)),
                datetime.now(UTC),
            )
            done = await self._jobs.fail(self.queue, self.name, failed)
        if not done:
            logger.warning(
                "job %s [%s] attempt %d ended after this worker's lease ran out: another "
                "worker may run it again",
                payload.path,
                job.id,
                payload.attempt,
                extra={"correlation_id": payload.correlation_id},
            )
        step = job_attempt(
            self.queue,
            job.id,
            payload.attempt,
            job.correlation_id,
            outcome,
            started,
            None if error is None else error_text(error),
        )
        if outcome == "failed":  # the next attempt waits on the queue
            queued = queued_attempt(
                self.queue, job.id, payload.attempt + 1, job.correlation_id, datetime.now(UTC)
            )
            await self._record(step, queued)
        elif outcome == "dead_lettered":
            await self._record(replace(step, outcome="failed"), step)
        else:
            await self._record(step)

    async def _record(self, *steps: Attempt) -> None:
        """The job's steps in the flow history, on backends that keep one."""
        flow = self.core.backend.flow
        if flow is None or not self.core.settings.keep_history:
            return
        try:
            await flow.add_attempts(steps)
        except Exception as exc:  # history is best effort: never a job's failure
            logger.info("could not record a job's flow history: %s", exc)

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            held = list(self._running)
            if not held:
                continue
            try:
                kept = await self._jobs.extend(self.queue, self.name, held, self.lease)
            except Exception as exc:  # a blip: the next renewal (a third later) may pass
                logger.warning("renewing the leases of %d job(s) failed: %s", len(held), exc)
                continue
            lost = set(held) - kept
            if lost:
                logger.warning(
                    "lost the lease of %d running job(s) on %r (this worker stalled past "
                    "its lease): another worker may run them too: %s",
                    len(lost),
                    self.queue,
                    ", ".join(sorted(lost)),
                )

    async def _watch_depth(self, report: Callable[[QueueDepth], None]) -> None:
        last: QueueDepth | None = None
        while True:
            with contextlib.suppress(Exception):  # a blip: report on the next change
                depth = (await self._jobs.depth(self.queue)).get(self.queue, QueueDepth())
                if depth != last:
                    report(depth)
                    last = depth
            await asyncio.sleep(1.0)

    async def _finish(self) -> None:
        """Graceful stop: wait up to ``grace`` for the running jobs, hand back the rest."""
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=self.grace)
        await self._hand_back()

    async def _hand_back(self) -> None:
        unfinished = {job_id: t for job_id, t in self._running.items() if not t.done()}
        self._running.clear()
        for task in unfinished.values():
            task.cancel()
        await asyncio.gather(*unfinished.values(), return_exceptions=True)
        if unfinished:
            await asyncio.shield(self._jobs.release(self.queue, self.name, list(unfinished)))
            logger.warning(
                "stopped %d running job(s) on %r at the end of the grace period and handed "
                "them back: %s",
                len(unfinished),
                self.queue,
                ", ".join(sorted(unfinished)),
            )
