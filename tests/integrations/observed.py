"""What the observability tests run: the tracing test's job and consumer process
(:func:`consume_and_export`, which dumps its spans to a JSON-lines file), and a job that
always fails (the metrics test's failed job)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from afterward import Event, EventBus, job
from afterward.events import subscribe_worker

__all__ = ["consume_and_export", "record_delivery", "refuse", "span_rows"]


@job(tries=1)
async def record_delivery(order_id: int) -> None:
    """The queue job the checkout dispatches (a worker in the consumer process runs it)."""
    await asyncio.sleep(0)


@job(tries=1)
def refuse(reason: str) -> None:
    """A job whose only try fails."""
    raise RuntimeError(reason)


def span_rows(spans: Any) -> list[dict[str, Any]]:
    """SDK spans as plain rows: what both processes compare."""
    rows = []
    for span in spans:
        rows.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": None if span.parent is None else format(span.parent.span_id, "016x"),
                "links": [format(link.context.span_id, "016x") for link in span.links],
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
            }
        )
    return rows


def consume_and_export(bus_url: str, spans_file: str) -> None:
    """Handle ``order.completed`` in two groups and run the queue's jobs, traced, then
    write every span this process made to ``spans_file`` (one JSON row a line)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from afterward.integrations import opentelemetry as afterward_otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    afterward_otel.instrument(provider)
    bus = EventBus(bus_url)

    @bus.subscribe("order.completed", group="billing")
    async def invoice(event: Event) -> None:
        await asyncio.sleep(0)

    @bus.subscribe("order.completed", group="notification")
    def notify(event: Event) -> None:
        return None

    subscribe_worker(bus, "default")

    async def main() -> None:
        async with bus:
            await bus.drain()

    asyncio.run(main())
    provider.shutdown()
    rows = span_rows(exporter.get_finished_spans())
    Path(spans_file).write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    consume_and_export(sys.argv[1], sys.argv[2])
