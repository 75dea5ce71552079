"""Many requests at once, a bounded number in flight: :func:`pool` and the engine under
:class:`~afterward.http.Batch`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar, overload

import httpx

from afterward._exceptions import ConfigError, InvalidRequestError
from afterward._loop import run_sync
from afterward.http._request import PendingRequest
from afterward.http._retry import Retry, RetryValue, as_retry
from afterward.http._send import deliver

__all__ = [
    "DEFAULT_CONCURRENCY",
    "UNSET",
    "Result",
    "check_concurrency",
    "is_failure",
    "pool",
    "pool_retry",
    "pool_sync",
    "run_requests",
    "split_requests",
]

K = TypeVar("K", bound=Hashable)

#: What each key of a pool or batch holds: the response, or the exception raised.
Result: TypeAlias = httpx.Response | Exception
#: Requests in flight at once when no ``concurrency`` is given (fewer if fewer requests).
DEFAULT_CONCURRENCY = 16
#: ``retry=`` not given: requests follow ``http.configure(retry=...)``.
UNSET: Any = object()


def check_concurrency(value: object) -> int | None:
    """Return ``value`` if it is ``None`` or an int >= 1 (``bool`` is not accepted)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"concurrency must be an int >= 1, got {value!r}")
    return value


def split_requests(requests: object, what: str) -> tuple[list[Any] | None, list[PendingRequest]]:
    """Check ``requests`` and split it into (keys or ``None`` for a list, requests)."""
    if isinstance(requests, Mapping):
        keys: list[Any] | None = list(requests)
        items = list(requests.values())
    elif isinstance(requests, list | tuple):
        keys, items = None, list(requests)
    else:
        raise InvalidRequestError(
            f"http.{what}() takes a dict or a list of requests (http.get(...), ...), "
            f"got {type(requests).__name__}"
        )
    for position, item in enumerate(items):
        if not isinstance(item, PendingRequest):
            where = repr(keys[position]) if keys is not None else f"index {position}"
            hint = " (did you await it already?)" if isinstance(item, httpx.Response) else ""
            raise InvalidRequestError(
                f"http.{what}(): the value at {where} is {type(item).__name__}, not a request "
                f"made with http.get/post/...{hint}"
            )
    return keys, items


def is_failure(result: Result) -> bool:
    """A failure is an exception (transport error, timeout...) or a status >= 400."""
    return isinstance(result, Exception) or result.status_code >= 400


async def run_requests(
    requests: Sequence[PendingRequest],
    concurrency: int | None,
    on_result: Callable[[int, Result], None] | None = None,
    retry: Retry | None = None,
) -> list[Result]:
    """Send ``requests`` with at most ``concurrency`` in flight; results in input order.

    ``retry`` is the policy of requests without one of their own (``None``: the
    configured default). ``on_result(index, result)`` is called once per request with
    its final result, in arrival order.
    """
    width = min(concurrency or DEFAULT_CONCURRENCY, len(requests))
    return await _Run(requests, width, on_result, retry).run() if requests else []


class _Run:
    """One pool or batch run: a few workers pulling the next request from a shared index.

    Workers, not a task per request: tasks and a contended semaphore cost several
    times what a worker's loop does. A worker about to wait (sleeping before a
    retry, or for a host at its ``max_per_host`` cap) pauses: another worker is
    started if fewer than ``width`` are busy, so the wait stalls nothing queued
    behind it. More workers than ``width`` may then exist; the semaphore keeps the
    attempts in flight at ``width`` exactly, and a worker finding more than ``width``
    busy ones when its request is done stops.
    """

    def __init__(
        self,
        requests: Sequence[PendingRequest],
        width: int,
        on_result: Callable[[int, Result], None] | None,
        retry: Retry | None,
    ) -> None:
        self.requests, self.width, self.on_result, self.retry = requests, width, on_result, retry
        self.results: list[Result | None] = [None] * len(requests)
        # The cap only matters when workers can outnumber it (some paused).
        self.slot = asyncio.Semaphore(width) if width < len(requests) else None
        self.next = 0  # index of the next request to send
        self.busy = 0  # workers running, not paused
        self.workers: set[asyncio.Task[None]] = set()

    async def run(self) -> list[Result]:
        for _ in range(self.width):
            self._start_worker()
        try:
            while self.workers:  # workers started while awaiting the others join in
                await asyncio.gather(*self.workers)
        finally:
            if self.workers:  # cancelled, or a worker failed: stop the others too
                for worker in self.workers:
                    worker.cancel()
                await asyncio.wait(self.workers)
        return self.results  # type: ignore[return-value]  # every slot is filled by now

    def _start_worker(self) -> None:
        self.busy += 1
        worker = asyncio.create_task(self._work())
        self.workers.add(worker)
        worker.add_done_callback(self.workers.discard)

    async def _work(self) -> None:
        try:
            while self.next < len(self.requests) and self.busy <= self.width:
                index = self.next
                self.next += 1
                result: Result
                try:
                    result = await deliver(self.requests[index], self.retry, self)
                except Exception as exc:
                    result = exc
                self.results[index] = result
                if self.on_result is not None:
                    self.on_result(index, result)
        finally:
            self.busy -= 1

    def pause(self) -> None:
        """A request of this worker waits: start another worker if work is left."""
        self.busy -= 1
        if self.busy < self.width and self.next < len(self.requests):
            self._start_worker()

    def resume(self) -> None:
        """The wait is over (the worker may stop after this request: see ``_work``)."""
        self.busy += 1


def pool_retry(value: object, where: str) -> Retry | None:
    """The ``retry=`` of a pool or batch: unset follows the default (``None``)."""
    return None if value is UNSET else as_retry(value, where)


def _assemble(keys: list[K] | None, results: list[Result]) -> dict[K, Result] | list[Result]:
    return results if keys is None else dict(zip(keys, results, strict=True))


@overload
async def pool(
    requests: Mapping[K, PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> dict[K, Result]: ...
@overload
async def pool(
    requests: Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> list[Result]: ...
async def pool(
    requests: Mapping[Any, PendingRequest] | Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> dict[Any, Result] | list[Result]:
    """Send many requests concurrently; results in definition order.

    Never raises for a failed request: each key (or position) holds the
    ``httpx.Response`` (whatever its status) or the exception that request raised.

    Example:
        >>> r = await http.pool({"user": http.get(u1), "orders": http.get(u2)})
        >>> r["user"].json()
        >>> first, second = await http.pool([http.get(u1), http.get(u2)], concurrency=1)

    Args:
        requests: a dict (results keyed the same) or a list (results in the same
            order) of requests made with ``http.get``/``post``/...
        concurrency: at most this many in flight; default every request up to 16.
        retry: the retry policy of requests without one of their own: an
            :class:`~afterward.http.Retry`, an int (extra attempts, default backoff),
            ``None`` or ``0`` for none; not given, ``http.configure(retry=...)``'s.
            Each key holds its final outcome; a request waiting to retry holds no
            ``concurrency`` slot.

    Raises:
        InvalidRequestError: not a dict/list, or a value that is not a request.
        ConfigError: ``concurrency`` is not an int >= 1, ``retry`` not a policy.
    """
    limit = check_concurrency(concurrency)
    policy = pool_retry(retry, "http.pool")
    keys, items = split_requests(requests, "pool")
    return _assemble(keys, await run_requests(items, limit, retry=policy))


@overload
def pool_sync(
    requests: Mapping[K, PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> dict[K, Result]: ...
@overload
def pool_sync(
    requests: Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> list[Result]: ...
def pool_sync(
    requests: Mapping[Any, PendingRequest] | Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
    retry: RetryValue = UNSET,
) -> dict[Any, Result] | list[Result]:
    """Blocking twin of :func:`pool`, run on afterward's shared background loop."""
    limit = check_concurrency(concurrency)
    policy = pool_retry(retry, "http.pool_sync")
    keys, items = split_requests(requests, "pool_sync")
    return _assemble(keys, run_sync(run_requests(items, limit, retry=policy)))
