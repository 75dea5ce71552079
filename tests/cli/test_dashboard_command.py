"""``afterward dashboard`` as a process: prints its token, serves, refuses without it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.cli.test_cli import _dead_letters
from tests.support import port_open, wait_for

AFTERWARD = str(Path(sys.executable).with_name("afterward"))


def test_dashboard_prints_a_token_and_requires_it(bus_url: str) -> None:
    (letter,) = _dead_letters(bus_url, "ORD-7")
    port = _free_port()
    process = subprocess.Popen(
        [AFTERWARD, "dashboard", "--app", "tests.cli.shop_app:bus", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(line.rstrip("\n") for line in process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        opened = wait_for(lambda: next((x for x in lines if "?token=" in x), None), timeout=30)
        token = opened.split("?token=")[1]
        assert len(token) >= 30
        base = f"http://127.0.0.1:{port}"
        assert lines[0] == f"afterward dashboard on {base}/"
        wait_for(lambda: port_open("127.0.0.1", port), timeout=30)
        assert httpx.get(f"{base}/").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        page = httpx.get(f"{base}/", headers=auth)
        assert page.status_code == 200 and "notification" in page.text
        assert httpx.post(f"{base}/dead-letters/{letter}/retry").status_code == 401
        # --app gave the dashboard the app's handlers: the retry runs and succeeds.
        retried = httpx.post(f"{base}/dead-letters/{letter}/retry", headers=auth)
        assert retried.status_code == 303
        assert retried.headers["location"].startswith("/dead-letters?done=")
        assert (
            "retried: handled"
            in httpx.get(f"{base}{retried.headers['location']}", headers=auth).text
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        reader.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
