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

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Result",
    "check_concurrency",
    "is_failure",
    "pool",
    "pool_sync",
    "run_requests",
    "split_requests",
]

K = TypeVar("K", bound=Hashable)

#: What each key of a pool or batch holds: the response, or the exception raised.
Result: TypeAlias = httpx.Response | Exception
#: Requests in flight at once when no ``concurrency`` is given (fewer if fewer requests).
DEFAULT_CONCURRENCY = 16


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
) -> list[Result]:
    """Send ``requests`` with at most ``concurrency`` in flight; results in input order.

    A few workers pull the next request from a shared cursor (fewer tasks than one per
    request, and the cap is exact). ``on_result(index, result)`` is called as each
    request finishes, in arrival order.
    """
    results: list[Result | None] = [None] * len(requests)
    cursor = iter(range(len(requests)))

    async def worker() -> None:
        for index in cursor:
            result: Result
            try:
                result = await requests[index].send()
            except Exception as exc:
                result = exc
            results[index] = result
            if on_result is not None:
                on_result(index, result)

    width = min(concurrency or DEFAULT_CONCURRENCY, len(requests))
    if width == 1:
        await worker()
    elif width:
        await asyncio.gather(*(worker() for _ in range(width)))
    return results  # type: ignore[return-value]  # every slot is filled by now


def _assemble(keys: list[K] | None, results: list[Result]) -> dict[K, Result] | list[Result]:
    return results if keys is None else dict(zip(keys, results, strict=True))


@overload
async def pool(
    requests: Mapping[K, PendingRequest], *, concurrency: int | None = None
) -> dict[K, Result]: ...
@overload
async def pool(
    requests: Sequence[PendingRequest], *, concurrency: int | None = None
) -> list[Result]: ...
async def pool(
    requests: Mapping[Any, PendingRequest] | Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
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

    Raises:
        InvalidRequestError: not a dict/list, or a value that is not a request.
        ConfigError: ``concurrency`` is not an int >= 1.
    """
    limit = check_concurrency(concurrency)
    keys, items = split_requests(requests, "pool")
    return _assemble(keys, await run_requests(items, limit))


@overload
def pool_sync(
    requests: Mapping[K, PendingRequest], *, concurrency: int | None = None
) -> dict[K, Result]: ...
@overload
def pool_sync(
    requests: Sequence[PendingRequest], *, concurrency: int | None = None
) -> list[Result]: ...
def pool_sync(
    requests: Mapping[Any, PendingRequest] | Sequence[PendingRequest],
    *,
    concurrency: int | None = None,
) -> dict[Any, Result] | list[Result]:
    """Blocking twin of :func:`pool`, run on afterward's shared background loop."""
    limit = check_concurrency(concurrency)
    keys, items = split_requests(requests, "pool_sync")
    return _assemble(keys, run_sync(run_requests(items, limit)))
