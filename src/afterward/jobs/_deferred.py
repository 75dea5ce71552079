"""``connection="deferred"``: after the response, in this process, with retries.

Each attempt is a deferred callback, so it takes one of the process's
``max_concurrency`` slots only while it runs. The wait before a retry (``backoff``) or
a first attempt (``delay``) is an event-loop timer holding no slot: when it fires,
the next attempt is deferred into a new defer scope of its own.

Jobs that have not succeeded at shutdown are handed to the ``"queue"`` connection if
one is registered, else logged as lost: a job still unfinished when a drain's grace
period ends is offered to the runtime's rescuers (:func:`_rescue`), and jobs waiting on
a timer are handed over at process exit, after the drain (:func:`move_pending_to_queue`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from afterward import _runtime
from afterward._runtime import Callback
from afterward._stats import incr
from afterward.defer import DeferScope, _current_scope, defer
from afterward.jobs._connections import get_connection
from afterward.jobs._runner import attempt, retry_delay, run_failed
from afterward.jobs._serialize import JobPayload

__all__ = ["DeferredConnection", "move_pending_to_queue"]

logger = logging.getLogger("afterward.jobs")

_lock = threading.Lock()
#: job id -> payload, for jobs waiting on a timer (backoff or delay)
_waiting: dict[str, JobPayload] = {}


class DeferredConnection:
    """Runs jobs after the response, in this process (needs an open defer scope)."""

    def dispatch(self, payload: JobPayload) -> None:
        """Defer the first attempt into the current scope.

        Raises:
            NoScopeError: no defer scope is open.
        """
        defer(_run, payload, name=f"job {payload.path} {payload.id}")


async def _run(payload: JobPayload) -> None:
    wait = payload.delay
    if wait > 0:
        _schedule(payload, wait)
        return
    error = await attempt(payload, "deferred")
    if error is None:
        return
    backoff = retry_delay(payload, error)
    if backoff is None:
        incr("jobs.failed")
        await run_failed(payload, error)
        return
    payload.attempt += 1
    payload.available_at = time.time() + backoff
    _schedule(payload, backoff)


def _schedule(payload: JobPayload, wait: float) -> None:
    with _lock:
        _waiting[payload.id] = payload
    asyncio.get_running_loop().call_later(wait, _wake, payload)


def _wake(payload: JobPayload) -> None:
    with _lock:
        if _waiting.pop(payload.id, None) is None:
            return  # handed to the queue meanwhile
    job_scope = DeferScope(payload.correlation_id)
    token = _current_scope.set(job_scope)
    try:
        defer(_run, payload, name=f"job {payload.path} {payload.id}", after_commit=False)
    finally:
        _current_scope.reset(token)
    job_scope.finish(ok=True)


def _hand_off(payload: JobPayload) -> bool:
    """Give ``payload`` to the ``"queue"`` connection; say whether it took it."""
    extra = {"correlation_id": payload.correlation_id}
    queue = get_connection("queue")
    if queue is None:
        return False
    try:
        queue.dispatch(payload)
    except Exception:
        logger.exception(
            "deferred job %s [%s] could not be moved to the queue (correlation_id=%s)",
            payload.path,
            payload.id,
            payload.correlation_id,
            extra=extra,
        )
        return False
    logger.warning(
        "deferred job %s [%s] moved to the queue at shutdown (attempt %d/%d, correlation_id=%s)",
        payload.path,
        payload.id,
        payload.attempt,
        payload.tries,
        payload.correlation_id,
        extra=extra,
    )
    return True


def _rescue(callback: Callback) -> bool:
    """Runtime rescuer: take over a deferred job left unfinished by a drain."""
    return callback.fn is _run and _hand_off(callback.args[0])


def move_pending_to_queue() -> int:
    """Hand every ``deferred`` job waiting for a retry or a delay to the ``"queue"``.

    Runs by itself at process exit, after deferred work was drained (jobs still running
    when the grace period ends are handed over by the drain itself); call it from a
    shutdown hook of your own if the process is ended some other way. Without a
    ``"queue"`` connection, each waiting job is logged as lost.

    Returns:
        How many jobs were handed over.
    """
    with _lock:
        waiting = list(_waiting.values())
        _waiting.clear()
    moved = 0
    for payload in waiting:
        if _hand_off(payload):
            moved += 1
            continue
        logger.error(
            "deferred job %s [%s] was lost at shutdown while waiting for attempt %d/%d "
            "(no 'queue' connection took it; correlation_id=%s)",
            payload.path,
            payload.id,
            payload.attempt,
            payload.tries,
            payload.correlation_id,
            extra={"correlation_id": payload.correlation_id},
        )
    return moved


_runtime.add_exit_hook(move_pending_to_queue)
_runtime.add_rescuer(_rescue)
