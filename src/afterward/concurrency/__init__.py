"""Run a list of callables concurrently: on the event loop, threads or processes.

Example:
    >>> from afterward import concurrency
    >>> user, orders = await concurrency.run([load_user, load_orders])
    >>> totals = concurrency.run_sync([lambda: crunch(a), lambda: crunch(b)], driver="process")
    >>> concurrency.defer([warm_cache, rebuild_index])       # after the response

Drivers:

- ``"async"``: coroutine functions run as tasks on the loop (sync callables in the
  thread pool). The default when every task is a coroutine function.
- ``"thread"``: each callable on a worker thread (the default otherwise); a returned
  coroutine is awaited on the loop.
- ``"process"``: each callable in one of a pool of worker processes (one per CPU,
  started on first use and reused); lambdas and closures work (cloudpickle, the
  ``afterward[process]`` extra). Results and exceptions must be picklable.
- ``"sync"``: one after another in the caller, in order (for tests and debugging);
  the timeout is checked between tasks.

Failures: the first task to raise (in completion order) makes ``run`` raise
:class:`~afterward.TaskError` (``.index``, ``.error``, raised ``from`` the original;
for the process driver the worker's traceback is chained as the original's cause).
What is left is stopped as on a timeout: coroutines are cancelled, process workers
killed, threads abandoned (they cannot be killed; their results are dropped).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from afterward import _loop
from afterward._exceptions import ConfigError, InvalidCallbackError, TaskError, TaskTimeout
from afterward._threads import DaemonExecutor
from afterward.defer import DeferredCallback
from afterward.defer import defer as defer_callback

__all__ = ["DRIVERS", "Driver", "defer", "run", "run_sync"]

Driver = Literal["async", "thread", "process", "sync"]
DRIVERS: tuple[Driver, ...] = ("async", "thread", "process", "sync")

Task = Callable[[], Any]

_threads = DaemonExecutor(max_workers=256, name="afterward-task")
_deferred_runs = itertools.count(1)


def _is_coroutine_function(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn)


def _check(tasks: object, driver: object, timeout: object) -> tuple[list[Task], Driver]:
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):
        raise InvalidCallbackError(
            f"concurrency needs a list of callables, got {type(tasks).__name__}"
        )
    for index, task in enumerate(tasks):
        if not callable(task):
            raise InvalidCallbackError(f"task {index} is not callable: {task!r}")
    if timeout is not None and not (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and timeout > 0
        and math.isfinite(timeout)
    ):
        raise ConfigError(f"timeout must be None or seconds > 0, got {timeout!r}")
    if driver is None:
        driver = "async" if tasks and all(map(_is_coroutine_function, tasks)) else "thread"
    elif driver not in DRIVERS:
        raise ConfigError(f"unknown driver {driver!r}; use one of {', '.join(DRIVERS)}")
    return list(tasks), driver  # type: ignore[return-value]


async def _in_thread(task: Task) -> Any:
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(_threads, functools.partial(context.run, task))
    return await result if inspect.isawaitable(result) else result


async def _on_loop(task: Task) -> Any:
    if _is_coroutine_function(task):
        return await task()
    return await _in_thread(task)


def _starter(driver: Driver) -> Callable[[Task], Awaitable[Any]]:
    if driver == "process":
        from afterward.concurrency._process import pool

        return pool().run
    return _on_loop if driver == "async" else _in_thread


async def _gather(tasks: list[Task], driver: Driver, timeout: float | None) -> list[Any]:
    start = _starter(driver)
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(start(task)) for task in tasks]
    index = {future: n for n, future in enumerate(futures)}
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pending: set[asyncio.Future[Any]] = set(futures)
    try:
        while pending:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TaskTimeout(
                    f"concurrency.run timed out after {timeout} s with {len(pending)} of "
                    f"{len(tasks)} tasks unfinished ({driver} driver); they were stopped"
                )
            done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_EXCEPTION
            )
            for future in sorted(done, key=index.__getitem__):
                error = future.exception()
                if error is not None:
                    raise TaskError(index[future], error) from error
        return [future.result() for future in futures]
    finally:
        for future in pending:
            future.cancel()


def _check_deadline(deadline: float | None, timeout: float | None, n: int) -> float | None:
    """Raise if the run's time is up before task ``n``; else return the seconds left."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TaskTimeout(f"concurrency.run timed out after {timeout} s before task {n}")
    return remaining


class _Expired(Exception):
    """The run's own deadline passed while a task was awaited."""


async def _await_within(awaitable: Awaitable[Any], remaining: float | None) -> Any:
    # Only our own deadline makes a TaskTimeout: a task raising TimeoutError itself
    # (a socket timeout...) fails with a TaskError like any other exception.
    limit = asyncio.timeout(remaining)
    try:
        async with limit:
            return await awaitable
    except TimeoutError:
        if limit.expired():
            raise _Expired from None
        raise


async def _one_by_one(tasks: list[Task], timeout: float | None) -> list[Any]:
    deadline = None if timeout is None else time.monotonic() + timeout
    results = []
    for n, task in enumerate(tasks):
        remaining = _check_deadline(deadline, timeout, n)
        try:
            result = task()
            if inspect.isawaitable(result):
                result = await _await_within(result, remaining)
        except _Expired:
            raise TaskTimeout(f"concurrency.run timed out after {timeout} s in task {n}") from None
        except Exception as exc:
            raise TaskError(n, exc) from exc
        results.append(result)
    return results


async def run(
    tasks: Sequence[Task], driver: Driver | None = None, timeout: float | None = None
) -> list[Any]:
    """Run every callable in ``tasks`` concurrently; return their results in order.

    Args:
        tasks: callables taking no arguments (use ``functools.partial`` or a lambda
            to pass some); sync functions or coroutine functions.
        driver: ``"async"``, ``"thread"``, ``"process"`` or ``"sync"``; default
            ``"async"`` when every task is a coroutine function, else ``"thread"``.
        timeout: seconds for the whole run; ``None`` waits as long as it takes.

    Returns:
        The results, in the order of ``tasks``.

    Raises:
        TaskError: a task raised (``.index``, ``.error``); the rest were stopped.
        TaskTimeout: the run took longer than ``timeout`` (a ``TimeoutError``); what
            was left was cancelled, terminated (processes) or abandoned (threads).
        InvalidCallbackError: ``tasks`` is not a list of callables (a ``TypeError``).
        ConfigError: unknown ``driver`` or bad ``timeout`` (a ``ValueError``).
    """
    checked, chosen = _check(tasks, driver, timeout)
    if not checked:
        return []
    if chosen == "sync":
        return await _one_by_one(checked, timeout)
    return await _gather(checked, chosen, timeout)


def run_sync(
    tasks: Sequence[Task], driver: Driver | None = None, timeout: float | None = None
) -> list[Any]:
    """Blocking twin of :func:`run`, for code without an event loop.

    The ``"sync"`` driver runs the tasks in the calling thread; the others run on
    afterward's background event loop.
    """
    checked, chosen = _check(tasks, driver, timeout)
    if chosen == "sync":
        return _one_by_one_sync(checked, timeout)
    return _loop.run_sync(run(checked, chosen, timeout))


def _one_by_one_sync(tasks: list[Task], timeout: float | None) -> list[Any]:
    # Every task is called in the caller's thread; a coroutine it returns is awaited on
    # the background loop (the caller has no loop of its own to await it on).
    deadline = None if timeout is None else time.monotonic() + timeout
    results = []
    for n, task in enumerate(tasks):
        remaining = _check_deadline(deadline, timeout, n)
        try:
            result = task()
            if inspect.isawaitable(result):
                result = _loop.run_sync(_await_within(result, remaining))
        except _Expired:
            raise TaskTimeout(f"concurrency.run timed out after {timeout} s in task {n}") from None
        except Exception as exc:
            raise TaskError(n, exc) from exc
        results.append(result)
    return results


def defer(
    tasks: Sequence[Task], driver: Driver | None = None, timeout: float | None = None
) -> DeferredCallback:
    """Run ``tasks`` concurrently after the response (or when the scope exits).

    The arguments are checked now; the run is one deferred callback of the current
    scope, drained at shutdown like any other. A failure is logged with the
    correlation ID and counted in ``afterward.stats()["defer.failed"]``.

    Returns:
        The :class:`~afterward.DeferredCallback`.

    Raises:
        NoScopeError: no defer scope is open.
        InvalidCallbackError, ConfigError: as for :func:`run`.
    """
    checked, chosen = _check(tasks, driver, timeout)
    name = f"concurrency.defer #{next(_deferred_runs)}"  # unique: names replace
    return defer_callback(run, checked, chosen, timeout, name=name)
