"""The dashboard's queue and schema pages, read from the bus when a page loads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from afterward.dashboard import Recorder, create_app
from afterward.events import EventBus
from afterward.jobs import unregister_connection
from tests.cli.shop_app import send_receipt
from tests.support import serve_asgi

TOKEN = "queue-page-token"


def test_queue_page_counts_each_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    app = EventBus(url)
    app.use_for_jobs("receipts")
    try:
        send_receipt.dispatch("ORD-1", connection="queue")  # fails twice: a failed job
        asyncio.run(app.worker("receipts").run(stop_when_idle=True))
        send_receipt.dispatch("ORD-2", connection="queue", delay=3600)
        send_receipt.dispatch("ORD-3", connection="queue")
    finally:
        unregister_connection("queue")
    panel = create_app(EventBus(url), token=TOKEN, recorder=Recorder())
    with serve_asgi(panel) as base:
        page = httpx.get(f"{base}/queues", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    row = page.text.split('data-queue="receipts"', 1)[1].split("</tr>", 1)[0]
    cells = [c.split("</td>")[0].split(">")[-1] for c in row.split('<td class="num">')[1:]]
    assert cells[:3] == ["1", "1", "0"]  # ready, delayed, running
    assert "/failed-jobs?queue=receipts" in row  # one failed, linked to the list


def test_schema_page_lists_every_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    schema = {"type": "object", "properties": {"order_id": {"type": "integer"}}}
    app = EventBus(url)
    app.schema("order.completed", schema)
    app.schema("order.completed", {**schema, "properties": {"order_id": {"type": "number"}}})
    panel = create_app(EventBus(url), token=TOKEN, recorder=Recorder())
    with serve_asgi(panel) as base:
        page = httpx.get(f"{base}/schemas", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    assert page.text.count('data-topic="order.completed"') == 2
    assert page.text.index('data-version="2"') < page.text.index('data-version="1"')
    assert "&#34;number&#34;" in page.text or "&quot;number&quot;" in page.text
