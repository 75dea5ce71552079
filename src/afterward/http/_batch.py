"""A pool with lifecycle hooks that can also run after the response: :class:`Batch`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar, overload

import httpx

from afterward._context import correlation_id
from afterward._exceptions import ConfigError, InvalidCallbackError
from afterward._loop import run_sync
from afterward._stats import incr
from afterward._threads import DaemonExecutor
from afterward.defer import DeferredCallback
from afterward.defer import defer as defer_callback
from afterward.http._fake import Fake, active_fakes, bind
from afterward.http._pool import (
    UNSET,
    Result,
    check_concurrency,
    is_failure,
    pool_retry,
    run_requests,
    split_requests,
)
from afterward.http._request import PendingRequest
from afterward.http._retry import DEFAULT_BACKOFF, Retry, RetryValue, When

__all__ = ["Batch", "batch"]

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

logger = logging.getLogger("afterward.http")
#: Sync hooks run here, never on the event loop: a hook that writes to a database or
#: sleeps must not stall the other requests in flight.
_hook_threads = DaemonExecutor(max_workers=32, name="afterward-http-hook")
_HOOKS = ("before", "progress", "then", "catch", "finally_")


class Batch(Generic[K, R]):
    """Requests sent together, with hooks around them. Made by :func:`batch`.

    Hooks may be plain functions (run on a worker thread, never on the event loop) or
    coroutine functions (awaited on the loop). The hooks of one batch never run at the
    same time as each other, and a slow hook does not hold a connection: requests keep
    flowing while it runs. Registering the same kind of hook twice keeps both, in
    order. A hook that raises is logged (logger ``afterward.http``, with the
    correlation ID) and counted in ``afterward.stats()["hooks.failed"]``; the batch
    goes on and ``finally_`` still runs.

    With :meth:`retry` (or requests' own ``.retry()``), ``progress`` and ``catch`` are
    called once per key with its final outcome, after its retries.

    Example:
        >>> results = await (
        ...     http.batch({"inventory": http.post(u1, json=a), "payment": http.post(u2, json=b)})
        ...     .progress(lambda batch, key, response: log.info("%s done", key))
        ...     .catch(lambda batch, key, error: alert(key, error))
        ...     .finally_(lambda batch, results: metrics.flush())
        ...     .send()
        ... )
    """

    def __init__(
        self, requests: object, *, concurrency: int | None = None, retry: object = UNSET
    ) -> None:
        self._keys, self._requests = split_requests(requests, "batch")
        self._limit = check_concurrency(concurrency)
        self._retry: Retry | None = pool_retry(retry, "http.batch")
        self._hooks: dict[str, list[Callable[..., object]]] = {name: [] for name in _HOOKS}
        self._processed = 0
        self._failed = 0
        self._finished = False

    # -- hooks ----------------------------------------------------------------------

    def _hook(self, kind: str, fn: Callable[..., object]) -> Self:
        if not callable(fn):
            raise InvalidCallbackError(f"batch.{kind}() needs a callable, got {fn!r}")
        self._hooks[kind].append(fn)
        return self

    def before(self, fn: Callable[[Batch[K, R]], object]) -> Self:
        """Call ``fn(batch)`` before the first request is sent."""
        return self._hook("before", fn)

    def progress(self, fn: Callable[[Batch[K, R], K, httpx.Response], object]) -> Self:
        """Call ``fn(batch, key, response)`` once per successful request, as it arrives."""
        return self._hook("progress", fn)

    def then(self, fn: Callable[[Batch[K, R], R], object]) -> Self:
        """Call ``fn(batch, results)`` once every request is done, if none failed."""
        return self._hook("then", fn)

    def catch(self, fn: Callable[[Batch[K, R], K, Result], object]) -> Self:
        """Call ``fn(batch, key, response_or_error)`` once per failed request.

        A failure is a status >= 400 (``fn`` gets the ``httpx.Response``) or an
        exception: transport error, timeout, stray request under a fake (``fn`` gets it).
        """
        return self._hook("catch", fn)

    def finally_(self, fn: Callable[[Batch[K, R], R], object]) -> Self:
        """Call ``fn(batch, results)`` last, always, whether requests or hooks failed."""
        return self._hook("finally_", fn)

    def concurrency(self, limit: int) -> Self:
        """Send at most ``limit`` requests at once (default: all of them, up to 16).

        Raises:
            ConfigError: ``limit`` is not an int >= 1.
        """
        if limit is None:
            raise ConfigError("concurrency must be an int >= 1, got None")
        self._limit = check_concurrency(limit)
        return self

    def retry(
        self,
        times: int,
        backoff: float | Sequence[float] = DEFAULT_BACKOFF,
        when: When | None = None,
    ) -> Self:
        """Retry every request of the batch that has no policy of its own.

        Same arguments and conditions as :meth:`PendingRequest.retry
        <afterward.http.PendingRequest.retry>` (a request's own ``.retry()`` wins;
        this beats ``http.configure(retry=...)``; ``retry(0)`` turns retries off).
        Hooks see only each key's final outcome, once; a request waiting to retry
        holds no ``concurrency`` slot.

        Example:
            >>> http.batch(webhooks).retry(3, backoff=(1, 5)).catch(alert).defer()

        Raises:
            ConfigError: ``times`` is not an int >= 0, or ``backoff`` not seconds >= 0.
            InvalidCallbackError: ``when`` is not callable.
        """
        self._retry = Retry(times, backoff, when)
        return self

    # -- state ----------------------------------------------------------------------

    @property
    def total_requests(self) -> int:
        """How many requests the batch holds."""
        return len(self._requests)

    @property
    def processed_requests(self) -> int:
        """Requests finished so far (in a ``progress``/``catch`` hook: including its own)."""
        return self._processed

    @property
    def pending_requests(self) -> int:
        """Requests not finished yet."""
        return len(self._requests) - self._processed

    @property
    def failed_requests(self) -> int:
        """Requests that failed so far (status >= 400 or an exception)."""
        return self._failed

    @property
    def has_failures(self) -> bool:
        """Whether any request failed."""
        return self._failed > 0

    @property
    def finished(self) -> bool:
        """Whether every request is done (already true in ``then`` and ``finally_``)."""
        return self._finished

    # -- running --------------------------------------------------------------------

    async def send(self) -> R:
        """Send the batch, run its hooks, and return the results in definition order.

        Never raises for failed requests or hooks: each key holds the
        ``httpx.Response`` or the exception. Sending again runs the whole batch again
        (the state fields describe the latest run).
        """
        self._processed = self._failed = 0
        self._finished = False
        await self._run_hooks("before", self)
        per_result = self._hooks["progress"] or self._hooks["catch"]
        queue: asyncio.Queue[tuple[int, Result] | None] = asyncio.Queue()
        deliverer = asyncio.create_task(self._deliver(queue)) if per_result else None
        try:
            results = await run_requests(
                self._requests,
                self._limit,
                (lambda i, r: queue.put_nowait((i, r))) if deliverer else self._count,
                self._retry,
            )
        except BaseException:
            if deliverer is not None:
                deliverer.cancel()
            raise
        if deliverer is not None:
            queue.put_nowait(None)
            await deliverer
        assembled: Any = (
            results if self._keys is None else dict(zip(self._keys, results, strict=True))
        )
        self._finished = True
        if not self.has_failures:
            await self._run_hooks("then", self, assembled)
        await self._run_hooks("finally_", self, assembled)
        return assembled  # type: ignore[no-any-return]

    def send_sync(self) -> R:
        """Blocking twin of :meth:`send` (afterward's shared background loop; sync hooks
        still run on worker threads)."""
        return run_sync(self.send())

    def defer(
        self, *, name: str | None = None, always: bool = False, after_commit: bool = True
    ) -> DeferredCallback:
        """Run the whole batch, hooks included, after the response (or scope exit).

        It becomes a deferred callback of the current scope (ASGI, WSGI, Django,
        ``afterward.scope()``), named ``"http.batch"`` unless ``name`` is given, with
        the request's correlation ID, and is drained on shutdown like any other. A fake
        active now (``http.fake()``) answers its requests even if it ended before the
        batch runs.

        Args:
            name: a name for :func:`afterward.forget`, replacing any callback of that
                name in the scope (by default batches never replace each other).
            always: run even if the response failed (status >= 400 or an exception).
            after_commit: inside a database transaction, wait for it to commit.

        Raises:
            NoScopeError: no defer scope is open.
        """
        callback = defer_callback(
            _run_deferred, self, active_fakes(), name=name, always=always, after_commit=after_commit
        )
        return callback

    # -- internals ------------------------------------------------------------------

    def _key(self, index: int) -> Any:
        return index if self._keys is None else self._keys[index]

    def _count(self, index: int, result: Result) -> None:
        self._processed += 1
        if is_failure(result):
            self._failed += 1

    async def _deliver(self, queue: asyncio.Queue[tuple[int, Result] | None]) -> None:
        while (item := await queue.get()) is not None:
            index, result = item
            self._count(index, result)
            kind = "catch" if is_failure(result) else "progress"
            await self._run_hooks(kind, self, self._key(index), result)

    async def _run_hooks(self, kind: str, *args: Any) -> None:
        for fn in self._hooks[kind]:
            try:
                await _invoke(fn, args)
            except Exception as exc:
                incr("hooks.failed")
                cid = correlation_id()
                logger.error(
                    "http batch hook %s (%s) raised (correlation_id=%s): %s: %s",
                    kind,
                    getattr(fn, "__qualname__", repr(fn)),
                    cid,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                    extra={"correlation_id": cid},
                )

    def __repr__(self) -> str:
        return (
            f"<Batch total={self.total_requests} processed={self._processed} "
            f"failed={self._failed}{' finished' if self._finished else ''}>"
        )


async def _invoke(fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    target = fn.func if isinstance(fn, functools.partial) else fn
    if inspect.iscoroutinefunction(target):
        await fn(*args)  # type: ignore[misc]
        return
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    result = await loop.run_in_executor(_hook_threads, functools.partial(context.run, fn, *args))
    if inspect.isawaitable(result):  # a lambda returning a coroutine
        await result


async def _run_deferred(deferred: Batch[Any, Any], fakes: tuple[Fake, ...]) -> None:
    if fakes:
        with bind(fakes):
            await deferred.send()
    else:
        await deferred.send()


_run_deferred.__qualname__ = "http.batch"  # the callback's name in logs and the dashboard


@overload
def batch(
    requests: Mapping[K, PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> Batch[K, dict[K, Result]]: ...
@overload
def batch(
    requests: Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> Batch[int, list[Result]]: ...
def batch(
    requests: Mapping[Any, PendingRequest] | Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> Batch[Any, Any]:
    """Group requests into a :class:`Batch`: add hooks, then ``send()`` or ``defer()``.

    Args:
        requests: a dict (results keyed the same) or a list (results in order).
        concurrency: at most this many in flight; default every request up to 16.
        retry: as :func:`~afterward.http.pool`'s (or call :meth:`Batch.retry`).

    Raises:
        InvalidRequestError: not a dict/list, or a value that is not a request.
        ConfigError: ``concurrency`` is not an int >= 1, ``retry`` not a policy.
    """
    return Batch(requests, concurrency=concurrency, retry=retry)
