"""Running a job payload: one attempt, the ``failed()`` hook, and a retry loop.

Shared by every connection: ``sync`` and background children use
:func:`run_attempts`; ``deferred`` and queue workers call :func:`attempt` /
:func:`run_payload` and :func:`run_failed` and wait between tries their own way.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

from afterward import _loop, _telemetry
from afterward._context import _correlation_id
from afterward._exceptions import JobError, JobTimeout
from afterward._stats import incr, observe
from afterward._threads import DaemonExecutor
from afterward.defer import DeferScope
from afterward.jobs._job import bind
from afterward.jobs._serialize import JobPayload, resolve

__all__ = [
    "SyncConnection",
    "attempt",
    "current_payload",
    "retry_delay",
    "run_attempts",
    "run_failed",
    "run_payload",
]

logger = logging.getLogger("afterward.jobs")

_current_payload: contextvars.ContextVar[JobPayload | None] = contextvars.ContextVar(
    "afterward_job_payload", default=None
)


def current_payload() -> JobPayload | None:
    """The payload of the job attempt running in this context, else ``None``.

    Set while a job's ``handle()`` (and what it defers) or its ``failed()`` hook runs,
    on every connection. ``payload.id`` is the same for every attempt of one dispatch,
    so it makes an idempotency key for an effect that must not repeat (a payment, an
    email); ``payload.attempt`` says which try this is.

    Example:
        >>> @job(tries=3)
        ... async def charge(order_id: int) -> None:
        ...     payload = current_payload()
        ...     await psp.charge(order_id, idempotency_key=payload.id if payload else None)
    """
    return _current_payload.get()


def retry_delay(payload: JobPayload, error: BaseException) -> float | None:
    """Seconds to wait before the attempt after ``payload.attempt`` failed with ``error``.

    ``None`` when that attempt was the last: no tries left, or ``error`` is a
    :class:`~afterward.JobError` that is not ``retryable``. A job error's
    ``retry_after`` replaces the backoff (a 429's ``Retry-After``).
    """
    if payload.attempt >= payload.tries:
        return None
    if isinstance(error, JobError):
        if not error.retryable:
            return None
        if error.retry_after is not None:
            return error.retry_after
    return payload.backoff_after(payload.attempt)


# Sync handle() methods run here; a timed-out one is abandoned (threads cannot be killed).
_executor = DaemonExecutor(max_workers=64, name="afterward-job")


async def _call(fn: Callable[[], object]) -> None:
    result: object
    if inspect.iscoroutinefunction(fn):
        result = fn()
    else:
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(_executor, functools.partial(context.run, fn))
    if inspect.isawaitable(result):
        await result


async def run_payload(payload: JobPayload) -> None:
    """Run one attempt of ``payload``'s job and return when it (and its deferred work) ends.

    The job runs with ``payload.correlation_id`` bound, inside its own defer scope: what
    it defers runs after it returns. The attempt is limited to ``payload.timeout``.

    Raises:
        JobTimeout: the attempt ran out of time (a sync ``handle`` is abandoned on its
            thread, a coroutine is cancelled).
        DispatchError: the job cannot be imported or built from its arguments.
        Exception: whatever the job raised.
    """
    handle, _ = bind(resolve(payload.path), payload.args, payload.kwargs)
    current = _current_payload.set(payload)
    try:
        async with DeferScope(payload.correlation_id):
            limit = asyncio.timeout(payload.timeout)
            try:
                async with limit:
                    await _call(handle)
            except TimeoutError:
                # Only our own limit is a JobTimeout: a job raising TimeoutError itself (a
                # socket timeout...) fails with that error, as it would with no limit.
                if not limit.expired():
                    raise
                raise JobTimeout(
                    f"job {payload.path} attempt {payload.attempt} timed out after "
                    f"{payload.timeout} s"
                ) from None
    finally:
        _current_payload.reset(current)


async def run_failed(payload: JobPayload, error: BaseException) -> None:
    """Call the job's ``failed(error)`` hook; never raises (a failing hook is logged)."""
    token = _correlation_id.set(payload.correlation_id)
    current = _current_payload.set(payload)
    try:
        _, failed = bind(resolve(payload.path), payload.args, payload.kwargs)
        await _call(functools.partial(failed, error))
    except Exception as exc:
        incr("hooks.failed")
        logger.exception(
            "failed() hook of job %s raised (correlation_id=%s): %s",
            payload.path,
            payload.correlation_id,
            exc,
            extra={"correlation_id": payload.correlation_id},
        )
    finally:
        _current_payload.reset(current)
        _correlation_id.reset(token)


async def attempt(payload: JobPayload, queue: str = "sync") -> Exception | None:
    """Run one attempt with logging and counting; return its exception, if any.

    ``queue`` labels its metrics (``afterward_jobs_total``, ``afterward_job_duration_seconds``)
    and span: the queue's name on the ``queue`` connection, else the connection's name.
    """
    tracing = _telemetry.tracing
    if tracing is None:
        return await _attempt(payload, queue)
    with tracing.job(queue, payload) as span:
        error = await _attempt(payload, queue)
        if error is not None:
            span.fail(error)
        return error


async def _attempt(payload: JobPayload, queue: str) -> Exception | None:
    extra = {"correlation_id": payload.correlation_id}
    label = f"job {payload.path} [{payload.id}] attempt {payload.attempt}/{payload.tries}"
    logger.info("%s started (correlation_id=%s)", label, payload.correlation_id, extra=extra)
    started = time.perf_counter()
    try:
        await run_payload(payload)
    except Exception as exc:
        # The outcome every connection settles the same way: another try, or the last.
        outcome = "failed" if retry_delay(payload, exc) is None else "retried"
        incr("jobs.attempts", labels=(queue, outcome))
        observe("jobs.seconds", (queue,), time.perf_counter() - started)
        incr("jobs.attempts_failed")
        logger.warning(
            "%s failed after %.3f s (correlation_id=%s): %s: %s",
            label,
            time.perf_counter() - started,
            payload.correlation_id,
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra=extra,
        )
        return exc
    incr("jobs.attempts", labels=(queue, "ok"))
    observe("jobs.seconds", (queue,), time.perf_counter() - started)
    incr("jobs.completed")
    logger.info(
        "%s succeeded in %.3f s (correlation_id=%s)",
        label,
        time.perf_counter() - started,
        payload.correlation_id,
        extra=extra,
    )
    return None


async def run_attempts(
    payload: JobPayload,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    queue: str = "sync",
) -> Exception | None:
    """Run the remaining attempts, waiting ``backoff`` between them, then ``failed()``
    (``queue``: see :func:`attempt`).

    Returns:
        ``None`` on success, else the last attempt's exception (after ``failed()``).
    """
    if payload.delay > 0:
        await sleep(payload.delay)
    while (error := await attempt(payload, queue)) is not None:
        wait = retry_delay(payload, error)
        if wait is None:
            incr("jobs.failed")
            await run_failed(payload, error)
            return error
        payload.attempt += 1
        await sleep(wait)
    return None


class SyncConnection:
    """``connection="sync"``: run now, in the caller, retries included.

    The caller blocks (backoff waits too) and gets the last exception once every try
    failed and ``failed()`` ran.
    """

    def dispatch(self, payload: JobPayload) -> None:
        """Run ``payload`` to the end, raising its last error."""
        error = _loop.run_sync(run_attempts(payload))
        if error is not None:
            raise error
