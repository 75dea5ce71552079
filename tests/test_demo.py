"""``afterward demo`` as users run it: the installed script, a real port, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import port_open, wait_for

AFTERWARD = str(Path(sys.executable).with_name("afterward"))
TOKEN = "demo-test-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Demo:
    def __init__(self, process: subprocess.Popen[str], port: int, db: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.db = db
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def cli(self, *args: str) -> object:
        run = subprocess.run(
            [AFTERWARD, *args, "--bus", f"sqlite:///{self.db}", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(run.stdout)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = _free_port()
    db = tmp_path / "shop.db"
    process = subprocess.Popen(
        [
            AFTERWARD,
            "demo",
            "--port",
            str(port),
            "--fail-rate",
            "1",
            "--seed",
            "1",
            "--token",
            TOKEN,
            "--db",
            str(db),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running = Demo(process, port, db)
    try:
        wait_for(lambda: port_open("127.0.0.1", port) or process.poll() is not None, timeout=30)
        assert process.poll() is None, "\n".join(running.lines)
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        running.reader.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def test_a_checkout_end_to_end(demo: Demo) -> None:
    wait_for(lambda: any(f"{demo.url}/afterward/?token={TOKEN}" in x for x in demo.lines))
    with httpx.Client(base_url=demo.url, timeout=10) as client:
        assert "Place order" in client.get("/").text
        response = client.post("/checkout", json={"sku": "A1", "qty": 2})
        assert response.status_code == 200
        order = response.json()
        assert order["order_id"] == "ORD-00001" and order["total"] == 48.0
        assert order["payment"]["ok"] is True
        cid = order["correlation_id"]
        assert response.headers["x-correlation-id"] == cid
        assert client.post("/checkout", json={"sku": "nope"}).status_code == 400

        # The per-checkout line: response time against the deferred work's time.
        line = wait_for(
            lambda: next((x for x in demo.lines if x.startswith("checkout ORD-00001")), None)
        )
        assert "answered in" in line and "deferred work done" in line and "4 failed" in line

        # The event reached the three groups; notification (mail down) dead-lettered.
        letters = wait_for(lambda: demo.cli("dlq", "list"), timeout=20)
        assert [(d["group"], d["event"]["correlation_id"]) for d in letters] == [
            ("notification", cid)
        ]
        assert letters[0]["event"]["data"]["order_id"] == "ORD-00001"
        assert demo.cli("events", "lag") == {
            group: {"order.completed": 0} for group in ("analytics", "billing", "notification")
        }

        # The dashboard shows the flow: the deferred calls, the publish, the dead letter.
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get(f"/afterward/flows/{cid}").status_code == 401
        flow = client.get(f"/afterward/flows/{cid}", headers=auth).text
        for service in ("inventory", "warehouse", "analytics", "crm"):
            assert f"{service} 503 (deferred batch)" in flow
        assert "published order.completed" in flow
        assert "dead letter in notification after 3 attempt(s)" in flow


def test_load_prints_the_latency_table(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            AFTERWARD,
            "demo",
            "--load",
            "5",
            "--port",
            "0",
            "--fail-rate",
            "0",
            "--bus",
            f"sqlite:///{tmp_path / 'load.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "5 checkouts per variant" in run.stdout
    for row in ("with afterward", "same work inline", "deferred work, after the response"):
        assert row in run.stdout
    assert "p50" in run.stdout and "p99" in run.stdout
    assert (tmp_path / "load.db").exists()  # --bus named the demo's bus


def test_checkout_refuses_bad_orders_before_paying() -> None:
    from afterward.demo import Shop
    from afterward.events import EventBus
    from tests.support import serve_asgi

    shop = Shop(EventBus("memory://"), fail_rate=0, seed=1, echo=None)
    with serve_asgi(shop.app) as url, httpx.Client(base_url=url, timeout=10) as client:
        bad = (
            {"sku": "A1", "qty": True},
            {"sku": "A1", "qty": 11},
            {"sku": ["A1"]},
            {"sku": "Z9"},
            [1],
        )
        for body in bad:
            refused = client.post("/checkout", json=body)
            assert refused.status_code == 400, (body, refused.text)
        assert client.post("/checkout", content=b"{oops").status_code == 400
        assert shop.services.calls["payment"] == 0


def test_quiet_checkouts_leave_no_bookkeeping_behind() -> None:
    from afterward.demo import Shop
    from afterward.events import EventBus
    from tests.support import serve_asgi

    shop = Shop(EventBus("memory://"), fail_rate=0, seed=1, echo=None)  # as with --load
    with serve_asgi(shop.app) as url, httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(3):
            assert client.post("/checkout", json={"sku": "A1", "qty": 1}).status_code == 200
        with shop.deferred_done:
            assert shop.deferred_done.wait_for(lambda: len(shop.deferred_ms) == 3, timeout=10)
    assert shop.answered == {}  # one entry per checkout would pile up under --load
