"""The dashboard's small parts: the chart, the counters, the flight recorder."""

from __future__ import annotations

import logging

from afterward.dashboard import Recorder
from afterward.dashboard._chart import line_chart
from afterward.dashboard._data import counts_from_stats


def test_chart_escapes_series_names_and_scales_to_the_top() -> None:
    svg = line_chart({"<b>g</b>/t": [0, 5, 10], "handled": [1, 1, 1]}, label='"x"')
    assert "<b>" not in svg and "&lt;b&gt;g&lt;/b&gt;/t" in svg
    assert 'aria-label="&quot;x&quot;"' in svg
    assert svg.count("<polyline") == 2 and ">10</text>" in svg


def test_counts_from_stats_reads_totals_and_finer_counters() -> None:
    assert counts_from_stats({"events.published": 3, "events.handled": 2, "defer.failed": 1}) == {
        ("published", "", "all topics"): 3,
        ("handled", "", "all topics"): 2,
    }
    finer = counts_from_stats(
        {"events.published": 3, "events.published:a.b": 3, "events.handled:billing:a.b": 2}
    )
    assert finer == {("published", "", "a.b"): 3, ("handled", "billing", "a.b"): 2}


def test_recorder_keeps_flows_and_captures_log_records() -> None:
    recorder = Recorder(capacity=3)
    recorder.record("a", "http", "GET / 200", ok=True, ms=1.0)
    recorder.record(None, "http", "ignored")
    recorder.record("b", "deferred", "boom", ok=False)
    assert [s.title for s in recorder.flow("a")] == ["GET / 200"]
    assert recorder.correlation_ids() == ["b", "a"]
    assert [s.title for s in recorder.recent(failed_only=True)] == ["boom"]
    recorder.install("afterward.test-recorder")
    try:
        log = logging.getLogger("afterward.test-recorder")
        log.error("callback failed\ntraceback...", extra={"correlation_id": "c"})
        log.error("no correlation id: not recorded")
    finally:
        recorder.uninstall("afterward.test-recorder")
    (step,) = recorder.flow("c")
    assert (step.kind, step.title, step.ok) == ("log", "callback failed", False)
    assert len(recorder.recent()) == 3  # capacity


def test_a_mounted_dashboard_keeps_sampling_after_its_first_request() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from afterward import EventBus
    from afterward.dashboard import create_app
    from tests.support import serve_asgi, wait_for

    bus = EventBus("memory://")
    dashboard = create_app(bus, auth=False, refresh=0.5)
    parent = Starlette(routes=[Mount("/afterward", app=dashboard)])  # no lifespan for it
    with serve_asgi(parent) as url:
        assert not dashboard.sampler.running
        assert httpx.get(f"{url}/afterward/").status_code == 200
        before = len(dashboard.sampler.samples)
        # No page is asked for from here on: the readings still come.
        wait_for(lambda: len(dashboard.sampler.samples) >= before + 2, timeout=10)
        assert dashboard.sampler.running


async def test_the_dashboard_lifespan_samples_until_shutdown() -> None:
    import asyncio

    from afterward import EventBus
    from afterward.dashboard import create_app

    dashboard = create_app(EventBus("memory://"), auth=False, refresh=0.5)
    async with dashboard.lifespan(), asyncio.timeout(10):
        while len(dashboard.sampler.samples) < 2:
            await asyncio.sleep(0.05)
        assert dashboard.sampler.running
    assert not dashboard.sampler.running
    assert dashboard.sampler.samples.maxlen == 90  # bounded memory
