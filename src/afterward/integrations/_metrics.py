"""afterward's metrics, defined once, and their Prometheus text exposition.

:func:`snapshot` reads this process's counters (:mod:`afterward._stats`) and a backend
reading (:class:`GaugeCache`) into :class:`Metric` rows; :func:`render` writes them in
Prometheus's text format (0.0.4) directly. That is ten times faster than building
prometheus-client metric families and formatting them (1,000 group x topic pairs: 18,000
lines, ``docs/benchmarks.md``), and needs no library, so ``afterward worker
--health-port`` serves ``/metrics`` with none installed.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from afterward._loop import run_sync
from afterward._stats import BUCKETS, Histogram, histograms, labeled, stats
from afterward.events import EventBus, Gauges, read_gauges

__all__ = ["CONTENT_TYPE", "GaugeCache", "Metric", "render", "snapshot"]

logger = logging.getLogger("afterward.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: ``afterward_events_handled_total``'s outcome per afterward counter.
_HANDLED = {
    "events.handled": "ok",
    "events.duplicate": "duplicate",
    "events.stale": "stale",
    "events.retried": "retried",
    "events.dead_lettered": "dead_lettered",
}
#: ``afterward_deferred_callbacks_total``'s outcome per afterward counter.
_DEFERRED = {
    "defer.completed": "ok",
    "defer.failed": "failed",
    "defer.skipped": "skipped",
    "defer.rolled_back": "rolled_back",
    "defer.lost": "lost",
    "defer.rescued": "rescued",
}
_STATES = ("ready", "delayed", "running", "failed")

Row = tuple[tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: its full name, type, help text, label names and samples.

    ``rows`` holds ``(label values, value)``; a histogram's are in ``histograms``.
    """

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    rows: Sequence[Row] = ()
    histograms: Sequence[tuple[tuple[str, ...], Histogram]] = ()


class GaugeCache:
    """The backend's gauges (:func:`~afterward.events.read_gauges`), read at most once
    per ``max_age`` seconds however many scrapes (or scrapers) ask."""

    def __init__(self, bus: EventBus, max_age: float = 1.0) -> None:
        self.bus = bus
        self._max_age = max_age
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self.value: Gauges | None = None

    def fresh(self) -> bool:
        """Whether the last reading is recent enough to serve."""
        return time.monotonic() - self._read_at < self._max_age

    async def refresh(self) -> Gauges | None:
        """The gauges, read again when stale; ``None`` when the backend failed (logged)."""
        if self.fresh():
            return self.value
        try:
            value: Gauges | None = await read_gauges(self.bus)
        except Exception as exc:
            logger.warning("metrics: cannot read the bus %s: %s", self.bus.url, exc)
            value = None
        with self._lock:
            self.value, self._read_at = value, time.monotonic()
        return value

    def get(self) -> Gauges | None:
        """:meth:`refresh` from a thread without an event loop (a threaded server)."""
        return self.value if self.fresh() else run_sync(self.refresh())


def _rows(series: dict[tuple[str, ...], int], suffix: tuple[str, ...] = ()) -> list[Row]:
    return [(labels + suffix, float(n)) for labels, n in series.items()]


def _process_metrics() -> list[Metric]:
    counts = labeled()
    durations = histograms()
    totals = stats()
    handled: list[Row] = []
    for name, outcome in _HANDLED.items():
        handled += _rows(counts.get(name, {}), (outcome,))
    return [
        Metric(
            "afterward_events_published_total",
            "counter",
            "Events published by this process.",
            ("topic",),
            _rows(counts.get("events.published", {})),
        ),
        Metric(
            "afterward_events_handled_total",
            "counter",
            "Events a group finished with in this process, by outcome.",
            ("group", "topic", "outcome"),
            handled,
        ),
        Metric(
            "afterward_handler_duration_seconds",
            "histogram",
            "Duration of each handler run (every attempt).",
            ("group", "topic"),
            histograms=list(durations.get("events.handler_seconds", {}).items()),
        ),
        Metric(
            "afterward_jobs_total",
            "counter",
            "Job attempts run in this process, by outcome.",
            ("queue", "outcome"),
            _rows(counts.get("jobs.attempts", {})),
        ),
        Metric(
            "afterward_job_duration_seconds",
            "histogram",
            "Duration of each job attempt.",
            ("queue",),
            histograms=list(durations.get("jobs.seconds", {}).items()),
        ),
        Metric(
            "afterward_deferred_callbacks_total",
            "counter",
            "Deferred callbacks in this process, by outcome.",
            ("outcome",),
            [((outcome,), float(totals.get(name, 0))) for name, outcome in _DEFERRED.items()],
        ),
        Metric(
            "afterward_http_requests_total",
            "counter",
            "HTTP attempts sent through afterward.http, by host and outcome.",
            ("host", "outcome"),
            _rows(counts.get("http.requests", {})),
        ),
    ]


def _backend_metrics(gauges: Gauges | None) -> list[Metric]:
    up = Metric(
        "afterward_bus_up",
        "gauge",
        "1 when the last backend reading worked, else 0.",
        (),
        [((), 0.0 if gauges is None else 1.0)],
    )
    if gauges is None:
        return [up]
    groups = sorted(set(gauges.lag) | set(gauges.dead_letters))
    return [
        up,
        Metric(
            "afterward_consumer_lag",
            "gauge",
            "Events published but not yet processed, per group and topic.",
            ("group", "topic"),
            [((g, t), float(n)) for g, topics in gauges.lag.items() for t, n in topics.items()],
        ),
        Metric(
            "afterward_dead_letters",
            "gauge",
            "Dead letters held, per group.",
            ("group",),
            [((g,), float(gauges.dead_letters.get(g, 0))) for g in groups],
        ),
        Metric(
            "afterward_queue_depth",
            "gauge",
            "Jobs per state, per queue.",
            ("queue", "state"),
            [
                ((queue, state), float(getattr(depth, state)))
                for queue, depth in gauges.queues.items()
                for state in _STATES
            ],
        ),
    ]


def snapshot(gauges: Gauges | None) -> list[Metric]:
    """Every afterward metric now, with ``gauges`` as the backend's reading (``None``:
    the backend could not be read: ``afterward_bus_up`` is 0 and its gauges absent)."""
    return _process_metrics() + _backend_metrics(gauges)


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


@functools.lru_cache(maxsize=65_536)
def _label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """``name="value",...`` (escaped), cached: the same series come back every scrape."""
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


_LE = [f'le="{float(b)!r}"' for b in BUCKETS] + ['le="+Inf"']


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def render(metrics: Sequence[Metric]) -> str:
    """``metrics`` in Prometheus's text exposition format (0.0.4)."""
    out: list[str] = []
    add = out.append
    for metric in metrics:
        name = metric.name
        add(f"# HELP {name} {metric.help}\n# TYPE {name} {metric.kind}")
        for values, value in metric.rows:
            labels = _label_text(metric.labels, values)
            add(f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}")
        for values, histogram in metric.histograms:
            labels = _label_text(metric.labels, values)
            head = f"{name}_bucket{{{labels}," if labels else f"{name}_bucket{{"
            for le, (_, n) in zip(_LE, histogram.buckets, strict=True):
                add(f"{head}{le}}} {n}")
            tail = f"{{{labels}}}" if labels else ""
            add(f"{name}_sum{tail} {histogram.total!r}\n{name}_count{tail} {histogram.count}")
    add("")
    return "\n".join(out)
