"""Process-wide counters behind :func:`afterward.stats`, and the labeled counters and
histograms the Prometheus exporter renders.

Counters are plain integers under a lock: they are touched a few times per callback,
event or request, never per byte, so a lock is cheaper than anything clever (about
0.2 µs a call, ``docs/benchmarks.md``). They count from the moment afterward is
imported, whether or not an exporter is ever loaded, so a scrape after a late
``import afterward.integrations.prometheus`` still sees everything since start.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter, defaultdict

__all__ = [
    "BUCKETS",
    "Histogram",
    "histograms",
    "incr",
    "labeled",
    "observe",
    "reset_stats",
    "stats",
]

#: Upper bounds (seconds) of the duration histograms' buckets, ``+Inf`` implied: from a
#: 5 ms handler to a minute-long job, fixed so an observation is a bisect and an add.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

Labels = tuple[str, ...]

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_labeled: defaultdict[tuple[str, Labels], int] = defaultdict(int)
#: (name, labels) -> [count per bucket (not cumulative; the last is +Inf)..., sum]
_histograms: dict[tuple[str, Labels], list[float]] = {}


def incr(name: str, amount: int = 1, labels: Labels | None = None) -> None:
    """Add ``amount`` to the counter ``name`` and, with ``labels``, to its labeled copy.

    Example:
        >>> incr("events.handled", labels=("billing", "order.completed"))
    """
    with _lock:
        _counts[name] += amount
        if labels is not None:
            _labeled[name, labels] += amount


def observe(name: str, labels: Labels, seconds: float) -> None:
    """Count one duration of ``seconds`` in the histogram ``name`` for ``labels``."""
    bucket = bisect_left(BUCKETS, seconds)  # bounds are inclusive ("le"), as bisect_left
    with _lock:
        cells = _histograms.get((name, labels))
        if cells is None:
            cells = _histograms[name, labels] = [0.0] * (len(BUCKETS) + 2)
        cells[bucket] += 1
        cells[-1] += seconds


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
      succeeded, that failed every try; ``jobs.attempts_failed`` counts failed attempts
      and ``jobs.attempts`` every attempt run in this process.
    - ``hooks.failed``: user hooks (HTTP batch hooks, retry ``when=`` predicates,
      ``on_lag`` callbacks...) that raised.
    - ``http.requests``: HTTP attempts sent (each retry is one more).
    - ``http.retries``: HTTP attempts made again (one per retry, whatever the outcome).
    - ``http.retries_exhausted``: HTTP requests whose last allowed attempt still failed
      in a retryable way (their final outcome is that failure).

    Example:
        >>> afterward.stats()["defer.failed"]
        0
    """
    with _lock:
        return dict(sorted(_counts.items()))


def labeled() -> dict[str, dict[Labels, int]]:
    """The labeled counters: name -> labels -> count (a snapshot)."""
    with _lock:
        items = list(_labeled.items())
    found: dict[str, dict[Labels, int]] = {}
    for (name, labels), value in items:
        found.setdefault(name, {})[labels] = value
    return found


class Histogram:
    """A snapshot of one histogram series: cumulative bucket counts, sum and count.

    Attributes:
        buckets: ``(upper bound, observations <= it)`` per bound, ``+Inf`` last.
        total: the sum of the observations (seconds).
        count: how many observations.
    """

    __slots__ = ("buckets", "count", "total")

    def __init__(self, cells: list[float]) -> None:
        running = 0
        self.buckets: list[tuple[float, int]] = []
        for bound, n in zip((*BUCKETS, float("inf")), cells, strict=False):
            running += int(n)
            self.buckets.append((bound, running))
        self.count = running
        self.total = cells[-1]


def histograms() -> dict[str, dict[Labels, Histogram]]:
    """The histograms: name -> labels -> :class:`Histogram` (a snapshot)."""
    with _lock:
        items = [(key, list(cells)) for key, cells in _histograms.items()]
    found: dict[str, dict[Labels, Histogram]] = {}
    for (name, labels), cells in items:
        found.setdefault(name, {})[labels] = Histogram(cells)
    return found


def reset_stats() -> None:
    """Set every counter back to zero (for tests and benchmarks)."""
    with _lock:
        _counts.clear()
        _labeled.clear()
        _histograms.clear()
