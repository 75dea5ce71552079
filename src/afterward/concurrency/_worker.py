"""A process-driver worker: ``python -m afterward.concurrency._worker``.

Reads cloudpickled callables from stdin, one frame each, and writes back
``(ok, result_or_exception, traceback_text)`` frames on a private copy of stdout;
the real stdout is pointed at stderr so a task's ``print`` cannot corrupt the replies.
Exits at end of input (the parent closed the pipe or died).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import sys
import traceback
from typing import Any

import cloudpickle

from afterward.concurrency._process import read_frame, write_frame

__all__ = ["main"]


def _execute(blob: bytes, loop: asyncio.AbstractEventLoop) -> tuple[bool, Any, str]:
    try:
        result = pickle.loads(blob)()
        if inspect.isawaitable(result):
            result = loop.run_until_complete(_wait(result))
    except Exception as exc:
        return False, exc, traceback.format_exc()
    return True, result, ""


async def _wait(awaitable: Any) -> Any:
    return await awaitable


def _encode(reply: tuple[bool, Any, str]) -> bytes:
    try:
        return bytes(cloudpickle.dumps(reply))
    except Exception as exc:
        what = "result" if reply[0] else f"exception {reply[1]!r}"
        error = RuntimeError(f"the task's {what} cannot be pickled: {exc}")
        return bytes(cloudpickle.dumps((False, error, reply[2])))


def main() -> None:
    """Serve tasks until stdin ends."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    loop = asyncio.new_event_loop()
    while (blob := read_frame(sys.stdin.buffer)) is not None:
        write_frame(replies, _encode(_execute(blob, loop)))


if __name__ == "__main__":
    main()
