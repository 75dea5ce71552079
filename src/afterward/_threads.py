"""A small thread pool of daemon threads for user callables.

``concurrent.futures.ThreadPoolExecutor`` refuses new work once the interpreter starts
shutting down and joins its (non-daemon) threads before ``atexit`` handlers run, which
is exactly when afterward must drain deferred work with a grace period. These workers
are daemon threads and keep accepting work until the drain is over.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["DaemonExecutor"]

P = ParamSpec("P")
T = TypeVar("T")

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonExecutor(Executor):
    """Run callables on up to ``max_workers`` daemon threads, started on demand."""

    def __init__(self, max_workers: int, name: str = "afterward-worker") -> None:
        self._max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``, starting a thread if none is idle; return its future."""
        future: Future[T] = Future()
        self._queue.put((future, fn, args, kwargs))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            elif self._threads < self._max_workers:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn, args, kwargs
            with self._lock:
                self._idle += 1
