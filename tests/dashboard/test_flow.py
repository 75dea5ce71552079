"""The flow page of a dashboard that shares only the bus's storage with the app.

What ``afterward dashboard --bus sqlite:///x.db`` sees while the app runs elsewhere:
no recorder steps of the app's process, only what the bus stored (events, attempts,
dead letters, failed jobs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from afterward import correlate
from afterward.dashboard import Recorder, create_app
from afterward.events import Event, EventBus, subscribe_worker
from afterward.jobs import unregister_connection
from tests.cli.shop_app import send_receipt
from tests.support import serve_asgi

TOKEN = "flow-test-token"
CID = "separate-process-cid"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    app = EventBus(url)  # the app's bus, with its handlers and a worker

    @app.subscribe("order.completed", group="billing")
    async def bill(event: Event) -> None:
        pass

    @app.subscribe("order.completed", group="mail", retries=1, backoff=0)
    async def mail(event: Event) -> None:
        raise ConnectionError("smtp down")

    app.use_for_jobs("receipts")
    subscribe_worker(app, "receipts")
    try:
        with correlate(CID):
            app.publish_sync("order.completed", {"order_id": "ORD-9"}, key="ORD-9")
            send_receipt.dispatch("ORD-9", connection="queue")
        app.drain_sync()
    finally:
        unregister_connection("queue")
    app._core.sync(app.aclose())
    yield url


def test_flow_page_shows_publishes_and_attempts_from_the_bus(url: str) -> None:
    bus = EventBus(url)  # the dashboard's own bus: no handlers, an empty recorder
    panel = create_app(bus, token=TOKEN, recorder=Recorder())
    with serve_asgi(panel) as base:
        page = httpx.get(f"{base}/flows/{CID}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    timeline = page.text.split('id="timeline"', 1)[1]
    for step in (
        "published order.completed",
        "billing handled attempt 1",
        "mail attempt 1 failed",
        "mail attempt 2 failed",
        "ConnectionError: smtp down",
        "dead letter in mail after 2 attempt(s)",
        "job attempt 1 queued on receipts",
        "job attempt 2 queued on receipts",
        "afterward.worker.receipts: job attempt 1 failed",
        "afterward.worker.receipts: job attempt 2 failed",
        "job tests.cli.shop_app:send_receipt failed after 2 attempt(s)",
    ):
        assert step in timeline, step
    # The dead letter and the failed job are shown once, with their links.
    assert "dead-lettered after" not in timeline
    assert "gave up on the job" not in timeline
    assert timeline.index("published order.completed") < timeline.index("billing handled")
