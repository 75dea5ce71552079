"""Deferred work at process exit: drained within the grace period, else logged as lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import afterward
from afterward import _runtime, defer
from afterward.defer import DeferredCallback
from afterward.integrations.wsgi import DeferMiddleware

SCRIPT = """
import logging, sys, threading
import afterward
from afterward import defer
from afterward.integrations.wsgi import DeferMiddleware

logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
afterward.configure(grace_period={grace})
out = sys.argv[1]

def slow_write():
    threading.Event().wait({work})   # stands for slow I/O
    open(out, "w").write("written")

def app(environ, start_response):
    defer(slow_write, name="report")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

# Serve one request the way a WSGI server does, then let the process end.
body = DeferMiddleware(app)({{"HTTP_X_CORRELATION_ID": "exit-cid"}}, lambda *a: None)
assert b"".join(body) == b"ok"
body.close()
"""


def _run(tmp_path: Path, grace: float, work: float) -> tuple[Path, str]:
    out = tmp_path / "out.txt"
    code = textwrap.dedent(SCRIPT).format(grace=grace, work=work)
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return out, result.stderr


def test_process_exit_waits_for_deferred_work(tmp_path: Path) -> None:
    out, stderr = _run(tmp_path, grace=10, work=0.3)
    assert out.read_text() == "written"
    assert "lost" not in stderr


def test_work_past_the_grace_period_is_logged_as_lost(tmp_path: Path) -> None:
    out, stderr = _run(tmp_path, grace=0.2, work=30)
    assert not out.exists()
    assert "deferred callback 'report' was lost" in stderr
    assert "correlation_id=exit-cid" in stderr


def test_a_rescuer_takes_over_unfinished_work_instead_of_losing_it() -> None:
    release = threading.Event()
    taken: list[str] = []

    def rescuer(callback: DeferredCallback) -> bool:
        if callback.name == "durable":
            taken.append(callback.correlation_id)
            return True
        return False

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        defer(release.wait, 10, name="durable")
        start_response("200 OK", [])
        return [b"ok"]

    _runtime.add_rescuer(rescuer)
    try:
        body = DeferMiddleware(app)({"HTTP_X_CORRELATION_ID": "rescue-cid"}, lambda *a: None)
        assert b"".join(body) == b"ok"
        body.close()  # type: ignore[attr-defined]
        assert afterward.drain_sync(0.1) is True  # nothing lost: it was taken over
        assert taken == ["rescue-cid"]
        assert afterward.stats()["defer.rescued"] == 1
        assert "defer.lost" not in afterward.stats()
    finally:
        _runtime._rescuers.remove(rescuer)
        release.set()
        afterward.drain_sync(5)
