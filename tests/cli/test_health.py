"""``--health-port`` on ``afterward worker`` and ``afterward consume``: real processes,
real HTTP requests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from afterward import EventBus
from tests.support import free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _command(*args: str, log: Path) -> Iterator[str]:
    """Run ``afterward ARGS --health-port P``; yield the health server's base URL."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from afterward.cli import main; main()",
                *args,
                "--health-port",
                str(port),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            wait_for(lambda: port_open("127.0.0.1", port) or process.poll() is not None, 20)
            assert process.poll() is None, log.read_text()
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(20)
    assert process.returncode == 0, log.read_text()


def _get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    response = httpx.get(url, timeout=timeout)
    return response.status_code, response.text


def test_a_worker_is_live_ready_and_serves_metrics(bus_url: str, tmp_path: Path) -> None:
    with _command("worker", "--bus", bus_url, log=tmp_path / "worker.log") as health:
        assert _get(f"{health}/healthz") == (200, "ok\n")
        assert _get(f"{health}/readyz") == (200, "ready\n")
        status, text = _get(f"{health}/metrics")
        assert status == 200 and "afterward_bus_up 1\n" in text
        assert "# TYPE afterward_job_duration_seconds histogram" in text
        assert _get(f"{health}/nope")[0] == 404


def test_readyz_fails_while_the_bus_cannot_be_reached(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{closed}/0"
    with _command("worker", "--bus", url, log=tmp_path / "worker.log") as health:
        assert _get(f"{health}/healthz") == (200, "ok\n")  # the loop itself is fine
        status, text = _get(f"{health}/readyz")
        assert status == 503 and text.startswith("not ready: ") and str(closed) in text
        assert "afterward_bus_up 0\n" in _get(f"{health}/metrics")[1]


def test_healthz_fails_while_a_handler_blocks_the_loop(bus_url: str, tmp_path: Path) -> None:
    app = "tests.cli.blocking_app:bus"
    with _command("consume", app, log=tmp_path / "consume.log") as health:
        assert _get(f"{health}/healthz") == (200, "ok\n")
        assert _get(f"{health}/readyz") == (200, "ready\n")
        EventBus(bus_url).publish_sync("block", {"seconds": 3})

        def stuck() -> bool:
            try:
                _get(f"{health}/healthz", timeout=0.5)
            except httpx.TimeoutException:
                return True
            return False

        wait_for(stuck, timeout=15, interval=0.1)
        wait_for(lambda: _get(f"{health}/healthz", timeout=5) == (200, "ok\n"), timeout=15)
