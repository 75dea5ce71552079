"""``sqlite:///path``: the embedded default backend, one file on this machine.

WAL mode, ``synchronous=NORMAL`` (durable across a killed process; ``FULL`` is not
needed for kill -9, only for power loss) and a busy timeout, so several processes can
publish and consume at once. Every primitive is one transaction run on the file's own
thread with the stdlib ``sqlite3`` module (:mod:`._db`): a primitive handles a whole
batch, so the thread hop is paid once per batch, and writes queued together share one
commit. Writers take the lock up front (``BEGIN IMMEDIATE``) so offsets are assigned
without races. One partition per topic.

It has the optional flow capability (:class:`~afterward.events._protocols.FlowLog`):
``afterward_flow_events`` indexes events by correlation ID (written with them) and
``afterward_attempts`` keeps every group's attempts, indexed by correlation ID.

Files: :mod:`._db` (the connection and its thread), :mod:`._schema` (tables),
:mod:`._events` and :mod:`._groups` (the SQL of each primitive), :mod:`._log` (the
:class:`SQLiteLog` that runs them); the work queue: :mod:`._jobs` (its SQL) and
:mod:`._queue` (:class:`SQLiteQueue`, on the same file and thread).
"""

from __future__ import annotations

from collections.abc import Callable

from afterward.events._backend import Backend
from afterward.events.backends.sqlite._db import path_of
from afterward.events.backends.sqlite._log import SQLiteLog
from afterward.events.backends.sqlite._queue import SQLiteQueue

__all__ = ["SQLiteLog", "SQLiteQueue", "open_backend", "path_of"]


def open_backend(url: str, open_store: Callable[[str], Backend]) -> Backend:
    """The backend of a ``sqlite://`` URL: the file holds the log, its state and the
    work queue."""
    log = SQLiteLog(url)
    return Backend.of(log, jobs=SQLiteQueue(log.db))
