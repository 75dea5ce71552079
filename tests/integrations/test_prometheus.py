"""Prometheus metrics, scraped by a real Prometheus server.

The test starts Prometheus (``prometheus``, from Debian) on a free loopback port with a
config it writes (scrape interval 1 s) and two targets: an ``afterward worker``
subprocess's ``--health-port`` (its ``/metrics``) and an app's mounted ``metrics_app``
served by uvicorn; then it asks Prometheus's HTTP API for the lag, the handled counts
and the job duration histogram.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from afterward import Event, EventBus
from afterward.integrations._metrics import render, snapshot
from afterward.integrations.prometheus import AfterwardCollector, metrics_app
from afterward.jobs import unregister_connection
from tests.events.jobs_app import nap
from tests.integrations.observed import refuse
from tests.support import free_port, port_open, require_binary, serve_asgi, wait_for

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: worker
    metrics_path: /metrics
    static_configs: [{{targets: ["127.0.0.1:{worker}"]}}]
  - job_name: app
    metrics_path: /metrics/
    static_configs: [{{targets: ["127.0.0.1:{app}"]}}]
"""


@contextlib.contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _query(prometheus: str, query: str) -> dict[str, float]:
    """The instant vector of ``query``: the series' distinguishing labels -> value."""
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()
    assert answer["status"] == "success", answer
    found = {}
    for result in answer["data"]["result"]:
        labels = result["metric"]
        shown = sorted(k for k in labels if k not in ("__name__", "instance"))
        key = ",".join(f"{k}={labels[k]}" for k in shown)
        found[key] = float(result["value"][1])
    return found


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def app_bus(tmp_path: Path) -> EventBus:
    bus = EventBus(f"sqlite:///{tmp_path / 'shop.db'}")
    for group in ("billing", "audit"):

        @bus.subscribe("order.completed", group=group)
        def handle(event: Event) -> None:
            return None

    return bus


def test_prometheus_scrapes_a_worker_and_an_app(app_bus: EventBus, tmp_path: Path) -> None:
    binary = require_binary("prometheus", "prometheus")
    for n in range(3):
        app_bus.publish_sync("order.completed", {"n": n})
    app_bus.drain_sync()  # handled: 3 per group, in this (the app's) process
    for n in range(2):
        app_bus.publish_sync("order.completed", {"n": n})  # lag: 2 per group
    app_bus.use_for_jobs("default")
    try:
        for n in range(3):
            nap.dispatch(str(tmp_path / "runs.db"), str(n), 0.02, connection="queue")
        refuse.dispatch("out of stock", connection="queue")
    finally:
        unregister_connection("queue")
    _runs_table(tmp_path / "runs.db")

    worker_port = free_port()
    worker = [
        sys.executable,
        "-c",
        "from afterward.cli import main; main()",
        "worker",
        "--bus",
        app_bus.url,
        "--health-port",
        str(worker_port),
    ]
    app = Starlette(routes=[Mount("/metrics", app=metrics_app(app_bus))])
    with (
        _process(worker, tmp_path / "worker.log"),
        serve_asgi(app) as app_url,
    ):
        wait_for(lambda: port_open("127.0.0.1", worker_port), timeout=20)
        config = tmp_path / "prometheus.yml"
        app_port = int(app_url.rsplit(":", 1)[1])
        config.write_text(CONFIG.format(worker=worker_port, app=app_port))
        web = free_port()
        prometheus_url = f"http://127.0.0.1:{web}"
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ]
        with _process(command, tmp_path / "prometheus.log"):
            wait_for(lambda: _ready(f"{prometheus_url}/-/ready"), timeout=30)
            query = lambda q: _query(prometheus_url, q)  # noqa: E731
            wait_for(lambda: query("up") == {"job=app": 1.0, "job=worker": 1.0}, 30, 0.2)

            lag = 'afterward_consumer_lag{job="app"}'
            wait_for(lambda: query(lag), timeout=30, interval=0.2)
            assert query(lag) == {
                "group=audit,job=app,topic=order.completed": 2.0,
                "group=billing,job=app,topic=order.completed": 2.0,
            }
            handled = 'afterward_events_handled_total{job="app"}'
            assert set(query(handled).values()) == {3.0}
            assert {k.split(",")[0] for k in query(handled)} == {"group=audit", "group=billing"}
            assert all("outcome=ok" in k for k in query(handled))

            # The worker ran the four jobs: its histogram counts them, bucket by bucket.
            count = 'afterward_job_duration_seconds_count{job="worker",queue="default"}'
            wait_for(lambda: list(query(count).values()) == [4.0], timeout=30, interval=0.2)
            buckets = query('afterward_job_duration_seconds_bucket{job="worker"}')
            assert buckets["job=worker,le=+Inf,queue=default"] == 4.0
            assert buckets["job=worker,le=0.01,queue=default"] <= 1.0  # the naps take 20 ms
            jobs = query('afterward_jobs_total{job="worker"}')
            assert jobs == {
                "job=worker,outcome=ok,queue=default": 3.0,
                "job=worker,outcome=failed,queue=default": 1.0,
            }
            depth = query('afterward_queue_depth{job="worker",queue="default"}')
            assert {k.split("state=")[1]: v for k, v in depth.items()} == {
                "ready": 0.0,
                "delayed": 0.0,
                "running": 0.0,
                "failed": 1.0,
            }


def _runs_table(path: Path) -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS runs (value TEXT, at REAL, pid INTEGER)")


def test_every_contract_metric_is_rendered_with_its_labels(app_bus: EventBus) -> None:
    app_bus.publish_sync("order.completed", {"n": 1})
    app_bus.drain_sync()
    app_bus.publish_sync("order.completed", {"n": 2})
    collector = AfterwardCollector(app_bus)
    text = render(snapshot(collector.gauges.get()))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    labels = {
        "afterward_events_published": {"topic"},
        "afterward_events_handled": {"group", "topic", "outcome"},
        "afterward_handler_duration_seconds": {"group", "topic"},
        "afterward_consumer_lag": {"group", "topic"},
        "afterward_dead_letters": {"group"},
        "afterward_deferred_callbacks": {"outcome"},
    }
    for name, wanted in labels.items():
        samples = families[name].samples
        assert samples, name
        assert {k for s in samples for k in s.labels} - {"le"} == wanted, name
    for name in ("afterward_jobs", "afterward_job_duration_seconds", "afterward_queue_depth"):
        assert name in families  # present, empty until a job runs here
    assert families["afterward_handler_duration_seconds"].type == "histogram"
    # The prometheus-client collector gives the very same samples.
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    theirs = generate_latest(registry).decode()

    def samples(exposition: str) -> set[Any]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in text_string_to_metric_families(exposition)
            for s in f.samples
        }

    assert samples(theirs) == samples(text)


def test_the_grafana_dashboard_charts_every_metric() -> None:
    import json

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "afterward_events_published_total",
        "afterward_events_handled_total",
        "afterward_handler_duration_seconds_bucket",
        "afterward_consumer_lag",
        "afterward_dead_letters",
        "afterward_jobs_total",
        "afterward_job_duration_seconds_bucket",
        "afterward_queue_depth",
        "afterward_deferred_callbacks_total",
        "afterward_http_requests_total",
    ):
        assert metric in queries, metric


def test_start_http_server_serves_the_metrics_on_a_port_of_its_own(app_bus: EventBus) -> None:
    from afterward.integrations.prometheus import start_http_server

    app_bus.publish_sync("order.completed", {"n": 1})
    server, thread = start_http_server(0, app_bus, registry=None)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        lags = {
            s.labels["group"]: s.value
            for f in text_string_to_metric_families(response.text)
            if f.name == "afterward_consumer_lag"
            for s in f.samples
        }
        assert lags == {"audit": 1.0, "billing": 1.0}
        assert "process_cpu_seconds_total" not in response.text  # registry=None: ours alone
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
