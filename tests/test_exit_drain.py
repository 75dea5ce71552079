"""Deferred work at process exit: drained within the grace period, else logged as lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
