"""Process-wide counters behind :func:`afterward.stats`.

Counters are plain integers under a lock: they are touched a few times per callback,
never per byte, so a lock is cheaper than anything clever.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["incr", "reset_stats", "stats"]

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def incr(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name``."""
    with _lock:
        _counts[name] += amount


def stats() -> dict[str, int]:
    """Return a snapshot of afterward's counters in this process.

    Keys are dotted names, sorted; the ones about deferred work:

    - ``defer.registered``: callbacks registered with :func:`~afterward.defer`.
    - ``defer.completed`` / ``defer.failed``: callbacks that returned / raised.
    - ``defer.skipped``: callbacks not run because the response failed (status >= 400
      or an exception) and they were not ``always=True``.
    - ``defer.rolled_back``: callbacks dropped because their transaction rolled back.
    - ``defer.lost``: callbacks still unfinished when the shutdown grace period ended.
    - ``defer.rescued``: unfinished at the end of the grace period but taken over
      durably (a deferred job moved to the queue).
    - ``jobs.dispatched`` / ``jobs.completed`` / ``jobs.failed``: jobs dispatched, that
      succeeded, that failed every try; ``jobs.attempts_failed`` counts failed attempts.
    - ``hooks.failed``: user hooks (HTTP batch hooks, retry ``when=`` predicates,
      ``on_lag`` callbacks...) that raised.
    - ``http.retries``: HTTP attempts made again (one per retry, whatever the outcome).
    - ``http.retries_exhausted``: HTTP requests whose last allowed attempt still failed
      in a retryable way (their final outcome is that failure).

    Example:
        >>> afterward.stats()["defer.failed"]
        0
    """
    with _lock:
        return dict(sorted(_counts.items()))


def reset_stats() -> None:
    """Set every counter back to zero (for tests and benchmarks)."""
    with _lock:
        _counts.clear()
