"""The retry policy: :class:`Retry`, when an outcome is retried and how long to wait.

Pure decisions, no I/O: the loop that sends, sleeps and logs is in ``_send.py``.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from afterward._backoff import backoff_step, check_backoff
from afterward._exceptions import ConfigError, InvalidCallbackError

__all__ = [
    "DEFAULT_BACKOFF",
    "IDEMPOTENT_METHODS",
    "NO_RETRY",
    "RETRY_AFTER_CAP",
    "Retry",
    "RetryValue",
    "When",
    "as_retry",
    "is_retryable",
    "retry_after",
]

#: Seconds before the 1st, 2nd, 3rd... retry; the last value repeats. Full jitter.
DEFAULT_BACKOFF: tuple[float, ...] = (0.1, 0.5, 2.0)
#: Methods retried by default; POST and PATCH need ``when=`` or an ``Idempotency-Key``.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: The longest wait a ``Retry-After`` header can impose, in seconds (read at each use).
RETRY_AFTER_CAP = 60.0

#: ``when(response_or_error) -> bool``, or a coroutine function returning one.
When: TypeAlias = Callable[[Any], "bool | Awaitable[bool]"]


def _checked_times(times: object) -> int:
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise ConfigError(f"retry times must be an int >= 0 (extra attempts), got {times!r}")
    return times


@dataclass(frozen=True, slots=True, init=False)
class Retry:
    """A retry policy: ``times`` extra attempts, ``backoff`` seconds between them.

    What ``retry=`` takes in :func:`~afterward.http.pool`, :func:`~afterward.http.batch`
    and :func:`~afterward.http.configure` (an int there means ``Retry(times)``);
    ``PendingRequest.retry()`` and ``Batch.retry()`` take the same arguments.

    A wait is drawn uniformly between 0 and the backoff step (full jitter), unless the
    response carries ``Retry-After`` (seconds or an HTTP date), which is waited
    instead, never more than 60 s.

    Example:
        >>> http.configure(retry=http.Retry(3, backoff=(0.2, 1, 5)))
        >>> await http.pool(requests, retry=2)
        >>> http.Retry(5, when=lambda r: isinstance(r, httpx.Response) and r.status_code == 409)

    Args:
        times: extra attempts after the first (``0``: none); an int >= 0.
        backoff: seconds, one number or a sequence whose last value repeats.
        when: ``when(response_or_error) -> bool`` decides instead of the default
            conditions (a transport error or timeout, 429, 5xx) and lets POST and
            PATCH be retried. A plain function is called on the event loop, so keep it
            quick; a coroutine function is awaited. If it raises, the outcome is final
            (the error is logged and counted in ``hooks.failed``).

    Raises:
        ConfigError: ``times`` is not an int >= 0, or ``backoff`` is not seconds >= 0.
        InvalidCallbackError: ``when`` is not callable.
    """

    times: int
    backoff: tuple[float, ...]
    when: When | None

    def __init__(
        self,
        times: int,
        backoff: float | Sequence[float] = DEFAULT_BACKOFF,
        when: When | None = None,
    ) -> None:
        if when is not None and not callable(when):
            raise InvalidCallbackError(
                f"retry when= must be a callable taking the response or error, got {when!r}"
            )
        object.__setattr__(self, "times", _checked_times(times))
        object.__setattr__(self, "backoff", check_backoff("retry", backoff))
        object.__setattr__(self, "when", when)

    def allows(self, method: str, headers: httpx.Headers) -> bool:
        """Whether a request with ``method`` and ``headers`` may be retried at all."""
        if self.times == 0:
            return False
        return method in IDEMPOTENT_METHODS or self.when is not None or "idempotency-key" in headers

    def wait(self, retry: int, response: httpx.Response | None) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based) after ``response``."""
        honoured = None if response is None else retry_after(response)
        if honoured is not None:
            return honoured
        return random.uniform(0.0, backoff_step(self.backoff, retry))


#: The policy of a request that is never retried.
NO_RETRY = Retry(0)

#: What ``retry=`` takes: a :class:`Retry`, an int (extra attempts, default backoff)
#: or ``None`` (no retries).
RetryValue: TypeAlias = Retry | int | None


def as_retry(value: object, where: str) -> Retry:
    """Turn a ``retry=`` value into a :class:`Retry` (``None`` and ``0``: no retries).

    Raises:
        ConfigError: neither a :class:`Retry`, an int >= 0 nor ``None``.
    """
    if value is None:
        return NO_RETRY
    if isinstance(value, Retry):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Retry(value)
    raise ConfigError(
        f"{where}: retry= takes http.Retry(times, backoff, when), an int (extra attempts) "
        f"or None, got {value!r}"
    )


def is_retryable(outcome: httpx.Response | Exception) -> bool:
    """The default conditions: a transport error (timeouts included), 429 or 5xx."""
    if isinstance(outcome, httpx.Response):
        return outcome.status_code == 429 or 500 <= outcome.status_code <= 599
    return isinstance(outcome, httpx.TransportError)


def retry_after(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the response's ``Retry-After`` asks for, capped at :data:`RETRY_AFTER_CAP`.

    ``None`` when there is no such header or it is neither delta-seconds nor an HTTP
    date; a date in the past is ``0``.
    """
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            date = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if date.tzinfo is None:  # "-0000": UTC by RFC 5322
            date = date.replace(tzinfo=datetime.UTC)
        seconds = max(0.0, date.timestamp() - now())
    else:
        if not math.isfinite(seconds) or seconds < 0:
            return None
    return min(seconds, RETRY_AFTER_CAP)
