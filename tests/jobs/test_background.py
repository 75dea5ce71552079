"""The ``background`` connection: real child processes, and one that outlives its server."""

from __future__ import annotations

import contextlib
import http.client
import importlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import afterward
from tests.jobs.sample import Hang, WriteFile
from tests.support import process_gone, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_background_job_writes_a_file_after_the_scope(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="afterward.jobs")
    out = tmp_path / "out.txt"
    with afterward.scope("cid-bg"):
        WriteFile(path=str(out), text="hello").dispatch(connection="background")
        assert not out.exists()
    text, cid, pid = wait_for(lambda: out.exists() and out.read_text()).split()
    assert (text, cid) == ("hello", "cid-bg")
    assert int(pid) != os.getpid()
    record = wait_for(lambda: [r for r in caplog.records if "exited with status 0" in r.message])
    assert "writing" in record[0].message  # the child's output is logged
    assert getattr(record[0], "correlation_id", None) == "cid-bg"


def test_background_child_sees_the_parents_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outside_jobs.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from afterward import job

            @job
            def touch(path: str) -> None:
                Path(path).write_text("from a module only sys.path knows")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("outside_jobs")
    out = tmp_path / "touched"
    module.touch.dispatch(str(out), connection="background")  # no scope: starts now
    assert wait_for(lambda: out.exists() and out.read_text()).startswith("from a module")


def test_timeout_kills_a_hung_background_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Hang(folder=str(tmp_path)).dispatch(connection="background")
    pid = int(wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text()))
    wait_for(lambda: process_gone(pid), timeout=10)
    assert (tmp_path / "failed").read_text() == "JobTimeout"
    wait_for(lambda: [r for r in caplog.records if "exited with status 1" in r.message])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_job_from_a_request_outlives_the_server_process(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.jobs.server_app:app", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(port), timeout=20)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", f"/start?folder={tmp_path}")
        assert connection.getresponse().read() == b"started"
        connection.close()
        child = int(wait_for(lambda: _read(tmp_path / "started")))
        server.kill()
        server.wait(timeout=10)
        assert not process_gone(child)
        (tmp_path / "go").touch()
        assert int(wait_for(lambda: _read(tmp_path / "done"))) == child
    finally:
        server.kill()
        server.wait(timeout=10)
        (tmp_path / "go").touch()


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
