"""``connection="background"``: a new Python process per job, started after the response.

The child is ``python -m afterward.jobs._child``, in a session of its own (it survives
the web worker being recycled or killed), with ``PYTHONPATH`` set to the parent's
``sys.path`` so whatever the parent imports, the child imports. The payload goes in
as JSON on stdin. A reaper thread waits for the child and logs its exit status and
output; when the job has a ``timeout``, the reaper kills the child's whole process
group once every try has had its time (the child enforces the timeout on itself first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

from afterward.concurrency._process import child_environment
from afterward.defer import _current_scope, defer
from afterward.jobs._serialize import JobPayload

__all__ = ["BackgroundConnection", "spawn"]

logger = logging.getLogger("afterward.jobs")

#: seconds the reaper allows on top of the job's own limits before it kills the child
_SLACK = 5.0
_OUTPUT_LIMIT = 20_000


class BackgroundConnection:
    """Starts each job in a new process after the response (at once with no scope open)."""

    def dispatch(self, payload: JobPayload) -> None:
        """Start ``payload`` in a child process once the current response is over."""
        if _current_scope.get() is None:
            spawn(payload)
        else:
            defer(spawn, payload, name=f"job {payload.path} {payload.id}")


def spawn(payload: JobPayload) -> subprocess.Popen[bytes]:
    """Start the child process for ``payload`` and a thread reaping it; return the child."""
    child = subprocess.Popen(
        [sys.executable, "-m", "afterward.jobs._child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_environment(),
        start_new_session=True,
    )
    threading.Thread(
        target=_reap, args=(child, payload), name=f"afterward-reaper-{child.pid}", daemon=True
    ).start()
    return child


def _limit(payload: JobPayload) -> float | None:
    if payload.timeout is None:
        return None
    waits = sum(payload.backoff_after(n) for n in range(1, payload.tries))
    return payload.delay + waits + payload.tries * payload.timeout + _SLACK


def _reap(child: subprocess.Popen[bytes], payload: JobPayload) -> None:
    extra = {"correlation_id": payload.correlation_id}
    try:
        output, _ = child.communicate(payload.to_json().encode(), timeout=_limit(payload))
        killed = False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        killed = True
    text = output.decode(errors="replace")[-_OUTPUT_LIMIT:]
    if child.returncode == 0:
        logger.info(
            "background job %s [%s] (pid %d) exited with status 0 (correlation_id=%s)%s",
            payload.path,
            payload.id,
            child.pid,
            payload.correlation_id,
            f"; output:\n{text}" if text else "",
            extra=extra,
        )
        return
    logger.error(
        "background job %s [%s] (pid %d) %s with status %s (correlation_id=%s); output:\n%s",
        payload.path,
        payload.id,
        child.pid,
        "was killed after its time ran out" if killed else "exited",
        child.returncode,
        payload.correlation_id,
        text,
        extra=extra,
    )
