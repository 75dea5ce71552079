"""OpenTelemetry traces: one checkout, one trace, across two processes.

A request through the ASGI middleware (uvicorn on loopback) defers a callback and an
HTTP batch to a loopback server, publishes an event and dispatches a queue job; a second
process handles the event in two groups and runs the job. Spans come from the SDK's
in-memory exporter here and from a JSON dump of the other process's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from afterward import EventBus, defer, http
from afterward.integrations import opentelemetry as afterward_otel
from afterward.integrations.asgi import DeferMiddleware
from afterward.jobs import unregister_connection
from tests.integrations.observed import record_delivery, refuse, span_rows
from tests.support import free_port, serve_asgi, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    afterward_otel.instrument(provider)
    try:
        yield memory
    finally:
        afterward_otel.uninstrument()
        provider.shutdown()


@pytest.fixture
def downstream() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP server recording the headers of each request."""
    seen: list[dict[str, str]] = []

    async def record(request: Request) -> Response:
        seen.append({**dict(request.headers), "path": request.url.path})
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{name}", record, methods=["POST"])])
    with serve_asgi(app) as url:
        yield url, seen


def _shop(bus: EventBus, downstream: str) -> Any:
    async def send_receipt(order_id: int) -> None:
        return None

    async def checkout(request: Request) -> Response:
        defer(send_receipt, 7, name="receipt")
        http.batch(
            {
                "crm": http.post(f"{downstream}/crm", json={"order": 7}),
                "warehouse": http.post(f"{downstream}/warehouse", json={"order": 7}),
            }
        ).defer()
        await bus.publish("order.completed", {"order_id": 7}, key="order-7")
        record_delivery.dispatch(7, connection="queue")
        return JSONResponse({"status": "paid"})

    return DeferMiddleware(Starlette(routes=[Route("/checkout", checkout, methods=["POST"])]))


def _count(exporter: InMemorySpanExporter, keep: Any) -> int:
    return len([s for s in exporter.get_finished_spans() if keep(s)])


def _one(rows: list[dict[str, Any]], name: str, **attributes: object) -> dict[str, Any]:
    found = [
        r
        for r in rows
        if r["name"] == name and all(r["attributes"].get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [r["name"] for r in rows])
    return found[0]


def test_a_checkout_is_one_trace_across_processes(
    exporter: InMemorySpanExporter,
    downstream: tuple[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    bus_url = f"sqlite:///{tmp_path / 'shop.db'}"
    bus = EventBus(bus_url)
    bus.use_for_jobs("default")
    try:
        with serve_asgi(_shop(bus, downstream[0])) as shop:
            response = httpx.post(f"{shop}/checkout")
            assert response.status_code == 200
            # The deferred work runs after the response: wait for its spans to end.
            wait_for(lambda: _count(exporter, lambda s: s.kind.name == "CLIENT") == 2)
            wait_for(lambda: _count(exporter, lambda s: s.name.startswith("defer ")) == 2)
    finally:
        unregister_connection("queue")
    spans_file = tmp_path / "consumer-spans.jsonl"
    subprocess.run(
        [sys.executable, "-m", "tests.integrations.observed", bus_url, str(spans_file)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    here = span_rows(exporter.get_finished_spans())
    there = [json.loads(line) for line in spans_file.read_text().splitlines()]
    rows = here + there

    # One trace ID across the request, its deferred work, the publish, both groups'
    # handlers and the job, in two processes.
    assert {r["trace_id"] for r in rows} == {here[0]["trace_id"]}

    server = _one(here, "POST", **{"http.request.method": "POST", "url.path": "/checkout"})
    assert server["kind"] == "SERVER" and server["parent_id"] is None
    assert server["attributes"]["http.response.status_code"] == 200

    # Deferred callbacks: children of the request's span and linked to it (it has ended).
    receipt = _one(here, "defer receipt")
    batch = _one(here, "defer http.batch")
    for deferred in (receipt, batch):
        assert deferred["kind"] == "INTERNAL"
        assert deferred["parent_id"] == server["span_id"]
        assert deferred["links"] == [server["span_id"]]

    # The batch's HTTP attempts: CLIENT spans whose traceparent the server received.
    clients = [r for r in here if r["kind"] == "CLIENT"]
    assert {c["parent_id"] for c in clients} == {batch["span_id"]}
    port = int(downstream[0].rsplit(":", 1)[1])
    for client in clients:
        attributes = client["attributes"]
        assert client["name"] == "POST" and attributes["http.request.method"] == "POST"
        assert attributes["url.full"] in {f"{downstream[0]}/crm", f"{downstream[0]}/warehouse"}
        assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
        assert attributes["http.response.status_code"] == 200
    received = {h["traceparent"].split("-")[2] for h in downstream[1]}
    assert received == {c["span_id"] for c in clients}

    publish = _one(here, "publish order.completed")
    assert publish["kind"] == "PRODUCER" and publish["parent_id"] == server["span_id"]
    assert publish["attributes"]["messaging.system"] == "sqlite"
    assert publish["attributes"]["messaging.destination.name"] == "order.completed"

    # The other process continues the producer's trace, read from the record.
    for group in ("billing", "notification"):
        handler = _one(there, "process order.completed", **{"messaging.consumer.group.name": group})
        assert handler["kind"] == "CONSUMER" and handler["parent_id"] == publish["span_id"]
        attributes = handler["attributes"]
        assert attributes["messaging.message.id"] == publish["attributes"]["messaging.message.id"]
        assert (attributes["messaging.system"], attributes["messaging.destination.name"]) == (
            "sqlite",
            "order.completed",
        )

    path = "tests.integrations.observed:record_delivery"
    dispatch = _one(here, f"dispatch {path}")
    assert dispatch["kind"] == "PRODUCER" and dispatch["parent_id"] == server["span_id"]
    run = _one(there, f"run {path}")
    assert run["kind"] == "CONSUMER" and run["parent_id"] == dispatch["span_id"]
    assert run["attributes"]["afterward.job.queue"] == "default"
    assert run["status"] == "UNSET"


def test_a_request_continues_the_incoming_trace_and_failures_are_errors(
    exporter: InMemorySpanExporter,
) -> None:
    async def broken(request: Request) -> Response:
        return PlainTextResponse("no", status_code=503)

    app = DeferMiddleware(Starlette(routes=[Route("/", broken)]))
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    with serve_asgi(app) as url:
        assert httpx.get(url + "/", headers={"traceparent": parent}).status_code == 503
    wait_for(lambda: exporter.get_finished_spans())
    (server,) = span_rows(exporter.get_finished_spans())
    assert (server["trace_id"], server["parent_id"]) == ("ab" * 16, "cd" * 8)
    assert server["status"] == "ERROR" and server["attributes"]["error.type"] == "503"


def test_events_keep_their_trace_context_in_sqlite(
    exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}")
    seen: list[str | None] = []

    @bus.subscribe("t", group="g")
    def handle(event: Any) -> None:
        seen.append(event.traceparent)

    event = bus.publish_sync("t", {"n": 1})
    bus.drain_sync()
    (publish,) = span_rows([s for s in exporter.get_finished_spans() if s.kind.name == "PRODUCER"])
    assert event.traceparent == seen[0]
    assert seen[0] is not None and seen[0].split("-")[2] == publish["span_id"]


_UNTRACED = """
import asyncio, sys
from afterward import EventBus, defer, http, _telemetry
from afterward.integrations.asgi import DeferMiddleware

bus = EventBus("memory://")
bus.subscribe("t", group="g")(lambda event: None)

async def app(scope, receive, send):
    defer(lambda: None)
    await bus.publish("t", {})
    with http.fake({"*": http.response(status=204)}):
        await http.get("https://crm.test/")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})

async def main():
    async def receive():
        return {"type": "http.request", "body": b""}
    async def send(message):
        return None
    await DeferMiddleware(app)({"type": "http", "method": "GET", "path": "/"}, receive, send)
    await bus.drain()

asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print(_telemetry.tracing, loaded)
"""


def test_without_instrument_nothing_is_imported() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _UNTRACED], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "None []"


def test_failures_mark_their_spans(exporter: InMemorySpanExporter) -> None:
    bus = EventBus("memory://")
    calls: list[int] = []

    @bus.subscribe("t", group="g", retries=1, backoff=0)
    def flaky(event: Any) -> None:
        calls.append(event.attempt)
        if event.attempt == 1:
            raise ValueError("first try")

    bus.publish_sync("t", {})
    bus.drain_sync()
    closed = free_port()
    with pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{closed}/").send_sync()
    with pytest.raises(RuntimeError, match="out of stock"):
        refuse.dispatch("out of stock", connection="sync")
    rows = span_rows(exporter.get_finished_spans())

    handlers = sorted(
        (r for r in rows if r["name"] == "process t"),
        key=lambda r: r["attributes"]["afterward.attempt"],
    )
    assert [(h["attributes"]["afterward.attempt"], h["status"]) for h in handlers] == [
        (1, "ERROR"),
        (2, "UNSET"),
    ]
    (client,) = [r for r in rows if r["kind"] == "CLIENT"]
    assert client["status"] == "ERROR" and client["attributes"]["error.type"] == "ConnectError"
    run = _one(rows, "run tests.integrations.observed:refuse")
    assert run["status"] == "ERROR" and run["attributes"]["error.type"] == "RuntimeError"
    assert run["attributes"]["afterward.job.queue"] == "sync"


def test_a_wsgi_request_is_a_server_span_with_its_deferred_work(
    exporter: InMemorySpanExporter,
) -> None:
    from afterward.integrations.wsgi import DeferMiddleware as WSGIDeferMiddleware
    from tests.support import serve_wsgi

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        defer(lambda: None, name="audit")
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serve_wsgi(WSGIDeferMiddleware(app)) as url:
        assert httpx.post(url + "/orders?id=7").status_code == 201
        wait_for(lambda: _count(exporter, lambda s: s.name == "defer audit") == 1)
    rows = span_rows(exporter.get_finished_spans())
    server = _one(rows, "POST")
    assert server["kind"] == "SERVER" and server["attributes"]["url.path"] == "/orders"
    assert server["attributes"]["http.response.status_code"] == 201
    audit = _one(rows, "defer audit")
    assert audit["parent_id"] == server["span_id"] and audit["links"] == [server["span_id"]]


def test_a_batch_handler_run_is_one_span_linked_to_each_publish(
    exporter: InMemorySpanExporter,
) -> None:
    bus = EventBus("memory://")

    @bus.subscribe("t", group="g", batch=True)
    def handle(events: list[Any]) -> None:
        return None

    bus.publish_sync("t", {"n": 1})
    bus.publish_sync("t", {"n": 2})
    bus.drain_sync()
    rows = span_rows(exporter.get_finished_spans())
    publishes = {r["span_id"] for r in rows if r["name"] == "publish t"}
    (run,) = [r for r in rows if r["name"] == "process t"]
    assert run["kind"] == "CONSUMER" and set(run["links"]) == publishes and len(publishes) == 2
    assert run["attributes"]["messaging.batch.message_count"] == 2
