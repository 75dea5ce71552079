"""Entry point of a background job's process: ``python -m afterward.jobs._child``.

Reads one :class:`~afterward.jobs.JobPayload` as JSON on stdin and runs it with its
retries, backoff, timeout and ``failed()`` hook. Exit status: 0 success, 1 the job
failed every try, 2 the payload could not be read or the job imported.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from typing import Any

from afterward._exceptions import DispatchError
from afterward.jobs._runner import run_attempts
from afterward.jobs._serialize import JobPayload, resolve

__all__ = ["main"]


class _Tolerant(io.TextIOBase):
    """Writes to a stream until its reader (the parent) is gone, then drops output.

    The child outlives the server that started it; a print must not kill the job.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (BrokenPipeError, ValueError):
            self._stream = open(os.devnull, "w")  # kept until exit
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            self._stream = open(os.devnull, "w")


def main() -> int:
    """Run the payload read from stdin; return the exit status."""
    sys.stdout = _Tolerant(sys.stdout)
    sys.stderr = _Tolerant(sys.stderr)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        payload = JobPayload.from_json(sys.stdin.buffer.read())
        resolve(payload.path)
    except DispatchError as exc:
        logging.getLogger("afterward.jobs").error("background job not started: %s", exc)
        return 2
    # This process exists for this job alone: one loop for its lifetime.
    error = asyncio.run(run_attempts(payload, queue="background"))
    sys.stdout.flush()
    return 0 if error is None else 1


if __name__ == "__main__":
    # os._exit: a timed-out sync handle() may still hold a thread; do not wait for it.
    status = main()
    logging.shutdown()
    os._exit(status)
