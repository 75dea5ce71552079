"""Process-wide counters behind :func:`afterward.stats`, and the labeled counters and
histograms the Prometheus exporter renders.

Each thread counts into its own shard (plain dicts, no lock: only that thread writes
them), and a reader sums the shards. Counting a handled event (a labeled counter and a
histogram) so costs a few dictionary operations, well under a microsecond
(``docs/benchmarks.md``): a lock would cost more than the counting. They count from the
moment afterward is imported, whether or not an exporter is ever loaded, so a scrape
after a late ``import afterward.integrations.prometheus`` still sees everything.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

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


Shard = tuple[dict[str, int], dict[tuple[str, Labels], int], dict[tuple[str, Labels], list[float]]]


class _Local(threading.local):
    """Each thread's own shard: its counts, labeled counts and histogram cells
    (``(name, labels) -> [count per bucket (not cumulative; the last +Inf)..., sum]``)."""

    def __init__(self) -> None:
        self.shard: Shard = ({}, {}, {})
        with _lock:
            _shards.append(self.shard)


_lock = threading.Lock()
_shards: list[Shard] = []
_local = _Local()


def incr(name: str, amount: int = 1, labels: Labels | None = None) -> None:
    """Add ``amount`` to the counter ``name`` and, with ``labels``, to its labeled copy.

    Example:
        >>> incr("events.handled", labels=("billing", "order.completed"))
    """
    counts, series, _ = _local.shard
    if labels is None:
        counts[name] = counts.get(name, 0) + amount
    else:  # the total is the sum of its labeled copies (stats() adds them up)
        key = (name, labels)
        series[key] = series.get(key, 0) + amount


def observe(name: str, labels: Labels, seconds: float) -> None:
    """Count one duration of ``seconds`` in the histogram ``name`` for ``labels``."""
    histograms = _local.shard[2]
    cells = histograms.get((name, labels))
    if cells is None:
        cells = histograms[name, labels] = [0.0] * (len(BUCKETS) + 2)
    cells[bisect_left(BUCKETS, seconds)] += 1  # bounds are inclusive ("le"), as bisect_left
    cells[-1] += seconds


def _snapshots() -> list[Shard]:
    # A dict copy is one C call: consistent even while its thread writes the original.
    with _lock:
        shards = list(_shards)
    return [(c.copy(), s.copy(), {k: list(v) for k, v in h.copy().items()}) for c, s, h in shards]


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
    totals: dict[str, int] = {}
    for counts, series, _ in _snapshots():
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
        for (name, _), value in series.items():
            totals[name] = totals.get(name, 0) + value
    return dict(sorted(totals.items()))


def labeled() -> dict[str, dict[Labels, int]]:
    """The labeled counters: name -> labels -> count (a snapshot)."""
    found: dict[str, dict[Labels, int]] = {}
    for _, series, _ in _snapshots():
        for (name, labels), value in series.items():
            values = found.setdefault(name, {})
            values[labels] = values.get(labels, 0) + value
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
    summed: dict[tuple[str, Labels], list[float]] = {}
    for _, _, cells in _snapshots():
        for key, values in cells.items():
            total = summed.get(key)
            summed[key] = (
                values if total is None else [a + b for a, b in zip(total, values, strict=True)]
            )
    found: dict[str, dict[Labels, Histogram]] = {}
    for (name, labels), values in summed.items():
        found.setdefault(name, {})[labels] = Histogram(values)
    return found


def reset_stats() -> None:
    """Set every counter back to zero (for tests and benchmarks)."""
    with _lock:
        for counts, series, cells in _shards:
            counts.clear()
            series.clear()
            cells.clear()
