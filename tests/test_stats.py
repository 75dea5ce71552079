"""The counters behind afterward.stats() and the Prometheus exporter."""

from __future__ import annotations

import pytest

from afterward._stats import BUCKETS, histograms, incr, labeled, observe, reset_stats, stats


def test_labeled_counters_count_beside_their_totals() -> None:
    incr("events.handled", labels=("billing", "orders"))
    incr("events.handled", labels=("billing", "orders"))
    incr("events.handled", labels=("audit", "orders"))
    incr("events.handled")
    assert stats()["events.handled"] == 4
    assert labeled()["events.handled"] == {("billing", "orders"): 2, ("audit", "orders"): 1}


@pytest.mark.parametrize(
    ("seconds", "first_bucket"),
    [(0.0, 0.005), (0.005, 0.005), (0.0051, 0.01), (1.0, 1.0), (59.9, 60.0), (61.0, None)],
)
def test_a_duration_lands_in_the_first_bucket_at_or_above_it(
    seconds: float, first_bucket: float | None
) -> None:
    observe("jobs.seconds", ("default",), seconds)
    histogram = histograms()["jobs.seconds"][("default",)]
    assert (histogram.count, histogram.total) == (1, seconds)
    assert [n for _, n in histogram.buckets][-1] == 1  # +Inf holds everything
    counted = [bound for bound, n in histogram.buckets if n == 1]
    assert counted[0] == (float("inf") if first_bucket is None else first_bucket)
    assert len(histogram.buckets) == len(BUCKETS) + 1


def test_reset_clears_every_kind() -> None:
    incr("x", labels=("a",))
    observe("h", (), 0.1)
    reset_stats()
    assert (stats(), labeled(), histograms()) == ({}, {}, {})
