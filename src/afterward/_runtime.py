"""Runs defer scopes' callbacks: bounded, off the response path, drained at shutdown.

One runtime per process. A scope's callbacks run one after another, in registration
order; at most ``settings.max_concurrency`` callbacks run at once across every scope and
event loop of the process (a process-wide limiter, not one per loop). Coroutine
callbacks run on the loop that served the request (or afterward's background loop for
WSGI, Django and sync scopes); sync callables run on daemon worker threads.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal, Protocol

from afterward import _loop, _telemetry
from afterward._config import check_grace, settings
from afterward._context import _correlation_id
from afterward._stats import incr
from afterward._threads import DaemonExecutor

__all__ = [
    "Callback",
    "CallbackState",
    "Runnable",
    "add_exit_hook",
    "add_rescuer",
    "drain",
    "drain_sync",
    "start_run",
]

CallbackState = Literal[
    "pending", "running", "done", "failed", "skipped", "forgotten", "replaced", "lost", "rescued"
]


class Callback(Protocol):
    """One piece of deferred work, as the runtime runs it
    (:class:`afterward.defer.DeferredCallback`)."""

    fn: Callable[..., object]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    name: str
    always: bool
    correlation_id: str
    state: CallbackState
    #: What the tracer captured when it was deferred (:mod:`afterward._telemetry`).
    origin: object | None


class Runnable(Hashable, Protocol):
    """What the runtime needs of a scope (:class:`afterward.defer.DeferScope`)."""

    @property
    def succeeded(self) -> bool:
        """False when the response failed: only ``always`` callbacks run then."""
        ...

    def enter_run(self) -> None:
        """Bind the scope in the task that runs its callbacks."""

    def next_callback(self) -> Callback | None:
        """The next pending callback, or ``None`` (the run is over)."""

    def unfinished(self) -> Sequence[Callback]:
        """Callbacks still running or due to run."""


logger = logging.getLogger("afterward.defer")


class _Limiter:
    """A semaphore shared by every event loop in the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        with self._lock:
            if self._active < settings.max_concurrency and not self._waiters:
                self._active += 1
                return
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                if (loop, waiter) in self._waiters:
                    self._waiters.remove((loop, waiter))
                    raise
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us just as we were cancelled
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters and self._active <= settings.max_concurrency:
                loop, waiter = self._waiters.popleft()
                try:
                    # Hand the slot over directly: the count of active callbacks is unchanged.
                    loop.call_soon_threadsafe(self._grant, waiter)
                except RuntimeError:  # that loop was closed: its waiter will never run
                    continue
                return
            self._active -= 1

    def _grant(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled():
            self.release()
        else:
            waiter.set_result(None)


_limiter = _Limiter()
_executor = DaemonExecutor(max_workers=256, name="afterward-defer")
_runs_lock = threading.Lock()
#: scope -> (loop running it, future completed when the run ends)
_runs: dict[Runnable, tuple[asyncio.AbstractEventLoop, concurrent.futures.Future[None]]] = {}
#: Asked, for each callback still unfinished when a drain times out, whether they can
#: take it over (e.g. the jobs part moves a deferred job to the durable queue).
_rescuers: list[Callable[[Callback], bool]] = []
#: Runs started on a server's loop, kept until they end (the loop holds tasks weakly).
_tasks: set[asyncio.Task[None]] = set()


def add_rescuer(rescuer: Callable[[Callback], bool]) -> None:
    """Register ``rescuer`` (once): at the end of a drain's grace period it is offered
    each unfinished callback and returns ``True`` if it took the work over durably."""
    if rescuer not in _rescuers:
        _rescuers.append(rescuer)


async def _call(callback: Callback) -> None:
    fn, args, kwargs = callback.fn, callback.args, callback.kwargs
    if inspect.iscoroutinefunction(fn) or (
        isinstance(fn, functools.partial) and inspect.iscoroutinefunction(fn.func)
    ):
        await fn(*args, **kwargs)
        return
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    result = await loop.run_in_executor(
        _executor, functools.partial(context.run, fn, *args, **kwargs)
    )
    if inspect.isawaitable(result):  # a sync callable that returned a coroutine
        await result


async def _run(scope: Runnable) -> None:
    scope.enter_run()
    while (callback := scope.next_callback()) is not None:
        if not scope.succeeded and not callback.always:
            callback.state = "skipped"
            incr("defer.skipped")
            continue
        await _limiter.acquire()
        try:
            if callback.state != "pending":  # forgotten while waiting for a slot
                continue
            callback.state = "running"
            _correlation_id.set(callback.correlation_id)
            try:
                tracing = _telemetry.tracing
                if tracing is None:
                    await _call(callback)
                else:
                    with tracing.deferred(callback.name, callback.origin):
                        await _call(callback)
            except Exception as exc:
                callback.state = "failed"
                incr("defer.failed")
                logger.error(
                    "deferred callback %r failed (correlation_id=%s): %s: %s",
                    callback.name,
                    callback.correlation_id,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                    extra={"correlation_id": callback.correlation_id},
                )
            else:
                callback.state = "done"
                incr("defer.completed")
        finally:
            _limiter.release()


async def _tracked(scope: Runnable, done: concurrent.futures.Future[None]) -> None:
    try:
        await _run(scope)
    finally:
        with _runs_lock:
            # The scope may have restarted (a late callback, from another thread) and
            # registered a new run meanwhile: only forget the entry if it is ours.
            entry = _runs.get(scope)
            if entry is not None and entry[1] is done:
                del _runs[scope]
        done.set_result(None)


def start_run(scope: Runnable, *, background: bool = False) -> concurrent.futures.Future[None]:
    """Start running ``scope``'s pending callbacks; return a future for the end.

    Callbacks are gated by ``scope.succeeded``, read as each one is taken. The run happens on
    the caller's event loop when there is one (the ASGI server's loop), else (or with
    ``background=True``) on afterward's background loop.
    """
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    loop: asyncio.AbstractEventLoop | None = None
    if not background:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
    with _runs_lock:
        _runs[scope] = (loop or _loop.background_loop(), done)
    if loop is not None:
        task = loop.create_task(_tracked(scope, done))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    else:
        asyncio.run_coroutine_threadsafe(_tracked(scope, done), _loop.background_loop())
    return done


def _pending_runs() -> list[
    tuple[Runnable, asyncio.AbstractEventLoop, concurrent.futures.Future[None]]
]:
    with _runs_lock:
        return [(scope, loop, done) for scope, (loop, done) in _runs.items()]


def _rescued(callback: Callback) -> bool:
    for rescuer in _rescuers:
        try:
            if rescuer(callback):
                return True
        except Exception:
            logger.exception("rescuing deferred callback %r failed", callback.name)
    return False


def _report_lost() -> int:
    lost = 0
    for scope, _, _ in _pending_runs():
        for callback in scope.unfinished():
            if _rescued(callback):
                callback.state = "rescued"
                incr("defer.rescued")
                continue
            callback.state = "lost"
            lost += 1
            incr("defer.lost")
            logger.error(
                "deferred callback %r was lost: still unfinished when the shutdown grace "
                "period ended (correlation_id=%s)",
                callback.name,
                callback.correlation_id,
                extra={"correlation_id": callback.correlation_id},
            )
    return lost


def _live_futures() -> list[concurrent.futures.Future[None]]:
    return [done for _, loop, done in _pending_runs() if not loop.is_closed()]


async def drain(timeout: float | None = None) -> bool:
    """Wait for every deferred callback in the process to finish.

    Args:
        timeout: seconds to wait; ``None`` uses ``settings.grace_period``.

    Returns:
        ``True`` when everything finished; ``False`` when the time ran out, after
        logging each unfinished callback as lost with its name and correlation ID.
    """
    check_grace("drain() timeout", timeout)
    limit = settings.grace_period if timeout is None else timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while futures := _live_futures():
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await asyncio.wait([asyncio.wrap_future(f) for f in futures], timeout=remaining)
    return _report_lost() == 0


def drain_sync(timeout: float | None = None) -> bool:
    """Blocking twin of :func:`drain`, for WSGI servers, Django and ``atexit``."""
    check_grace("drain_sync() timeout", timeout)
    limit = settings.grace_period if timeout is None else timeout
    deadline = time.monotonic() + limit
    while futures := _live_futures():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        concurrent.futures.wait(futures, timeout=remaining)
    return _report_lost() == 0


#: Run at interpreter exit after the drain (e.g. jobs hand their waiting retries to the
#: durable queue).
_exit_hooks: list[Callable[[], object]] = []


def add_exit_hook(hook: Callable[[], object]) -> None:
    """Register ``hook`` (once) to run at interpreter exit, after deferred work drained."""
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)


def _drain_at_exit() -> None:
    drain_sync()
    for hook in _exit_hooks:
        try:
            hook()
        except Exception:
            logger.exception("afterward exit hook %r failed", hook)


atexit.register(_drain_at_exit)
