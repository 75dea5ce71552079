"""The ``process`` driver: a reused pool of Python worker processes.

Workers are ``python -m afterward.concurrency._worker`` children that this process
started itself. A task goes to a worker as a cloudpickle over the worker's stdin (so
lambdas and closures work) and its result or exception comes back the same way on a
private pipe; the ``pickle.loads`` here is only ever between a parent and its own
children. A worker whose task is cancelled (timeout, another task failed) is killed
and reaped at once; the pool starts a new one when it needs it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from afterward._threads import DaemonExecutor

__all__ = [
    "ProcessPool",
    "RemoteTraceback",
    "WorkerDied",
    "child_environment",
    "pool",
    "read_frame",
    "write_frame",
]

_HEADER = struct.Struct("<Q")


def child_environment() -> dict[str, str]:
    """The environment for a child Python: ours, with ``PYTHONPATH`` = our ``sys.path``."""
    paths = dict.fromkeys(os.path.abspath(p or os.curdir) for p in sys.path)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as text.

    Set as the ``__cause__`` of the exception carried back from the worker, so the
    printed traceback shows where it happened in the child.
    """

    def __str__(self) -> str:
        return str(self.args[0])


class WorkerDied(RuntimeError):
    """A worker process exited while running a task (killed, crashed, ``os._exit``)."""


def read_frame(stream: IO[bytes]) -> bytes | None:
    """Read one length-prefixed frame; ``None`` at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: IO[bytes], body: bytes) -> None:
    """Write one length-prefixed frame and flush it."""
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "afterward.concurrency._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_environment(),
        )

    def call(self, blob: bytes) -> tuple[bool, Any, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            write_frame(self.process.stdin, blob)
        except (BrokenPipeError, ValueError):
            raise WorkerDied(f"worker {self.process.pid} is gone") from None
        reply = read_frame(self.process.stdout)
        if reply is None:
            raise WorkerDied(f"worker {self.process.pid} exited while running a task")
        ok, value, trace = pickle.loads(reply)
        return ok, value, trace

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.close()

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Call:
    """One task's claim on the pool; cancelling it kills the worker running it."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.worker: _Worker | None = None


class ProcessPool:
    """Up to ``size`` worker processes, started on demand and reused across calls."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._threads = DaemonExecutor(max_workers=256, name="afterward-process")

    def pids(self) -> list[int]:
        """PIDs of the live workers (for tests and tooling)."""
        with self._cond:
            return [w.process.pid for w in self._workers]

    async def run(self, fn: Callable[[], object]) -> Any:
        """Run ``fn()`` in a worker and return its result (or raise its exception)."""
        import cloudpickle

        blob = cloudpickle.dumps(fn)
        call = _Call()
        loop = asyncio.get_running_loop()
        try:
            ok, value, trace = await loop.run_in_executor(self._threads, self._run, blob, call)
        except asyncio.CancelledError:
            self._cancel(call)
            raise
        if ok:
            return value
        value.__cause__ = RemoteTraceback(trace)
        raise value

    def _run(self, blob: bytes, call: _Call) -> tuple[bool, Any, str]:
        worker = self._acquire(call)
        try:
            return worker.call(blob)
        except WorkerDied:
            worker.kill()
            self._discard(worker)
            raise
        finally:
            with self._cond:
                call.worker = None
                if worker in self._workers:
                    self._idle.append(worker)
                    self._cond.notify()

    def _acquire(self, call: _Call) -> _Worker:
        with self._cond:
            while True:
                if call.cancelled.is_set():
                    raise asyncio.CancelledError
                if self._idle:
                    worker = self._idle.pop()
                    call.worker = worker
                    return worker
                if len(self._workers) + self._starting < self.size:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker()
        finally:
            with self._cond:
                self._starting -= 1
        with self._cond:
            self._workers.add(worker)
            if call.cancelled.is_set():
                self._idle.append(worker)
                self._cond.notify()
                raise asyncio.CancelledError
            call.worker = worker
            return worker

    def _discard(self, worker: _Worker) -> None:
        with self._cond:
            self._workers.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            self._cond.notify()

    def _cancel(self, call: _Call) -> None:
        with self._cond:
            call.cancelled.set()
            worker = call.worker
            self._cond.notify_all()
        if worker is not None:
            self._discard(worker)
            worker.kill()

    def close(self) -> None:
        """Stop every worker: idle ones exit on end of input, busy ones are killed."""
        with self._cond:
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
        for worker in workers:
            worker.kill()


_pool: ProcessPool | None = None
_pool_lock = threading.Lock()


def pool() -> ProcessPool:
    """The process's pool (one worker per CPU), created on first use and closed at exit.

    Raises:
        ImportError: cloudpickle is missing; the message says which extra to install.
    """
    global _pool
    try:
        import cloudpickle  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "the process driver needs cloudpickle: pip install 'afterward[process]'"
        ) from exc
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPool(os.cpu_count() or 1)
            atexit.register(_pool.close)
        return _pool
