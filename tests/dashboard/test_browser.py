"""The dashboard in headless Chromium (Debian's, through Playwright): every page, a
dead letter retried and handled, a correlation ID followed across the flow.

Screenshots go to a temporary directory, or to ``$AFTERWARD_SCREENSHOTS`` (what
``scripts/screenshots`` sets to refresh ``docs/img/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from afterward import correlate
from afterward.demo import Shop
from afterward.events import EventBus, subscribe_worker
from afterward.jobs import unregister_connection
from tests.cli.shop_app import send_receipt
from tests.support import serve_asgi, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token"


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "apt-get install -y chromium (scripts/install does it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("AFTERWARD_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _checkout(client: httpx.Client, sku: str = "A1") -> str:
    response = client.post("/checkout", json={"sku": sku, "qty": 1})
    assert response.status_code == 200, response.text
    cid: str = response.json()["correlation_id"]
    return cid


def test_dashboard_pages_retry_and_flow(browser_page: Any, shots: Path) -> None:
    page = browser_page
    bus = EventBus("memory://")
    shop = Shop(
        bus,
        fail_rate=0.3,
        notification_fail_rate=1.0,
        seed=7,
        token=TOKEN,
        echo=None,
        refresh=0.5,
    )
    bus.use_for_jobs("receipts")  # a queue job that fails for good, for the failed-jobs page
    subscribe_worker(bus, "receipts")
    try:
        _walk_the_dashboard(page, shots, bus, shop)
    finally:
        unregister_connection("queue")


def _walk_the_dashboard(page: Any, shots: Path, bus: EventBus, shop: Shop) -> None:
    with serve_asgi(shop.app) as url, httpx.Client(base_url=url, timeout=10) as client:
        page.goto(f"{url}/")
        page.screenshot(path=str(shots / "demo-shop.png"))
        page.click("#buy")
        wait_for(lambda: "ORD-00001" in page.inner_text("#result"))
        cids = [_checkout(client, sku) for sku in ("B2", "C3")]
        with correlate(cids[0]):
            send_receipt.dispatch("ORD-00002", connection="queue")
        wait_for(
            lambda: (
                len(bus.dead_letters()) == 3
                and len(bus.failed_jobs()) == 1
                and len(shop.deferred_ms) == 3
            )
        )

        # Overview: live counters, the chart and the lag table (refreshed in place).
        page.goto(f"{url}/afterward/?token={TOKEN}")
        assert page.url == f"{url}/afterward/"  # the token left the address bar
        assert page.inner_text("#dead-letter-count") == "3"
        for burst in (2, 0, 3):  # a few live refreshes, so the chart has a shape
            stamp = page.get_attribute("#live", "data-refreshed") or ""
            for _ in range(burst):
                _checkout(client)
            # The live refresh (our JS, under the strict CSP) replaces the page's body.
            wait_for(lambda s=stamp: (page.get_attribute("#live", "data-refreshed") or "") != s)
        wait_for(lambda: len(bus.dead_letters()) == 8)  # of notification (the job: failed jobs)
        wait_for(lambda: page.inner_text("#dead-letter-count") == "8")
        assert "notification" in page.inner_text("#lag")
        page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

        # Dead letters: list, filter, detail with payload and traceback.
        page.click("nav >> text=Dead letters")
        assert page.locator("#dead-letters tbody tr").count() == 8
        page.select_option("select[name=group]", "notification")
        page.click("form.filters button")
        assert page.locator("#dead-letters tbody tr").count() == 8
        page.screenshot(path=str(shots / "dashboard-dead-letters.png"), full_page=True)
        page.click("#dead-letters tbody tr >> nth=0 >> td >> nth=0 >> a")
        assert "ORD-00001" in page.inner_text("#payload")
        assert "ConnectionError" in page.inner_text("#traceback")
        page.screenshot(path=str(shots / "dashboard-dead-letter.png"), full_page=True)

        # Retry it: the mail provider is back, the handler runs, the letter leaves.
        page.click("#retry")
        assert "retried: handled" in page.inner_text("#flash")
        assert page.locator("#dead-letters tbody tr").count() == 7
        assert "ORD-00001" in shop.ledger["emails"]
        assert len(bus.dead_letters()) == 7

        # Follow a correlation ID from a dead letter to its flow.
        page.click(f"#dead-letters a:text('{cids[0]}')")
        assert page.inner_text("#flow-cid") == cids[0]
        timeline = page.inner_text("#timeline")
        for step in (
            "POST /checkout ORD-00002",
            "payment 200 (inline)",
            "published order.completed",
            "answered 200",
            "billing handled attempt 1",
            "notification attempt 1 failed",
            "notification attempt 3 failed",
            "dead letter in notification after 3 attempt(s)",
            "job tests.cli.shop_app:send_receipt failed after 2 attempt(s)",
            "(deferred batch)",
            "deferred batch done",
        ):
            assert step in timeline, step
        page.screenshot(path=str(shots / "dashboard-flow.png"), full_page=True)

        # The search form reaches the same flow.
        page.click("nav >> text=Flows")
        page.fill("#cid", cids[1])
        page.click("form.filters button")
        assert page.inner_text("#flow-cid") == cids[1]

        page.click("nav >> text=Deferred work")
        counts = page.inner_text("#deferred-counts")
        assert "defer.completed" in counts
        page.screenshot(path=str(shots / "dashboard-deferred.png"), full_page=True)

        page.click("nav >> text=Failed jobs")
        assert "receipt for ORD-00002 bounced" in page.inner_text("#failed-jobs")
        page.screenshot(path=str(shots / "dashboard-failed-jobs.png"), full_page=True)
        page.click("#failed-jobs tbody tr >> nth=0 >> td >> nth=0 >> a")
        assert "ConnectionError" in page.inner_text("#traceback")
        page.click("button:text('Retry')")  # back on the queue; it fails again, for good
        assert "retried" in page.inner_text("#flash")
        wait_for(lambda: len(bus.failed_jobs()) == 1 and bus.failed_jobs()[0].attempts == 2)

        # Retry all that is left, from the list.
        page.click("nav >> text=Dead letters")
        page.click("#retry-all")
        assert "retried 7 dead letter(s); 0 left" in page.inner_text("#flash")
        assert bus.dead_letters() == [] and len(bus.failed_jobs()) == 1
