"""One event loop on a daemon thread, shared by every sync twin in the process.

Sync APIs (``send_sync``, ``pool_sync``, ``publish_sync``, WSGI/Django deferred work...)
hand their coroutine to this loop and wait for the result. One loop per process keeps
connection pools warm across calls and works under a running loop, which a per-call
``asyncio.run()`` does not.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from afterward._exceptions import BlockingCallError

__all__ = ["background_loop", "in_background_loop", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def background_loop() -> asyncio.AbstractEventLoop:
    """Return the process's background loop, starting its thread on first use."""
    global _loop, _thread
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            new_loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(new_loop, ready), name="afterward-loop", daemon=True
            )
            thread.start()
            ready.wait()
            _loop, _thread = new_loop, thread
        return _loop


def in_background_loop() -> bool:
    """Whether the caller runs on the background loop's thread."""
    return _thread is not None and threading.current_thread() is _thread


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and block until it returns.

    The caller's context variables (correlation ID, defer scope) travel with it.

    Raises:
        BlockingCallError: called from the background loop's own thread (it would
            deadlock); a ``RuntimeError``.
    """
    if in_background_loop():
        coro.close()
        raise BlockingCallError(
            "a sync afterward API was called on afterward's own event loop thread "
            "(a coroutine callback, an async job run by a sync twin...); use the async "
            "API there"
        )
    future = asyncio.run_coroutine_threadsafe(coro, background_loop())
    return future.result(timeout)


def _forget_after_fork() -> None:
    # A forked child has the loop object but not its thread: start afresh on demand.
    global _loop, _thread
    _loop = None
    _thread = None


os.register_at_fork(after_in_child=_forget_after_fork)
