"""Connections: where a dispatched job goes, and the registry that names them.

The seam with the durable queue (read this if you build a connection)
---------------------------------------------------------------------
A *connection* is any object with one method::

    class Connection(Protocol):
        def dispatch(self, payload: JobPayload) -> None: ...

registered under a name with ``afterward.jobs.register_connection(name, connection)``
(``unregister_connection(name)`` removes it). afterward registers ``"sync"``,
``"deferred"`` and ``"background"``; the event bus registers ``"queue"`` when it is
configured for jobs. Until something is registered as ``"queue"``, dispatching to it
raises :class:`~afterward.DispatchError` saying what to configure.

- ``dispatch`` receives a :class:`~afterward.jobs.JobPayload` that was already checked:
  the job imports back from ``payload.path``, ``args``/``kwargs`` are JSON values,
  ``payload.to_json()`` / ``JobPayload.from_json()`` are the wire format. It is called
  synchronously from ``Job.dispatch()`` (any thread, maybe on a running event loop, so
  it must not block for long) and must raise to refuse the job.
- ``payload.attempt`` is the next attempt to run (1-based), ``payload.tries`` the total,
  ``payload.available_at`` the Unix time before which it must not run (``delay`` and
  backoff both end up there), ``payload.backoff_after(attempt)`` the wait after a
  failed attempt.
- A worker runs one attempt with ``await afterward.jobs.run_payload(payload)``: it
  imports the job, binds ``payload.correlation_id``, opens a defer scope (callbacks
  deferred by the job run when the attempt returns), enforces ``payload.timeout``
  (raising :class:`~afterward.JobTimeout`) and re-raises the job's own exception. When
  the last try failed, the worker calls ``await afterward.jobs.run_failed(payload,
  error)`` (the job's ``failed()`` hook; never raises) and stores the failed job.
- Shutdown hand-off: ``deferred`` jobs that have not succeeded at shutdown are passed
  to the ``"queue"`` connection's ``dispatch`` if one is registered, else logged as
  lost: jobs still running or pending when a drain's grace period ends (through the
  runtime's rescuers, so they count as ``defer.rescued``, not lost; this happens on
  whatever thread runs the drain, maybe an event loop's), and jobs waiting for a retry
  or a delay at interpreter exit (``atexit``, a plain thread with no running loop;
  ``afterward.jobs.move_pending_to_queue()`` does it on demand). ``payload.attempt``
  is then the attempt still to run. A rescued job that was mid-attempt may also finish
  in-process before the process dies: the queue must tolerate that (at least once).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from afterward import _telemetry
from afterward._config import settings
from afterward._context import _correlation_id, new_correlation_id
from afterward._exceptions import DispatchError
from afterward._stats import incr
from afterward.jobs._options import JobOptions
from afterward.jobs._serialize import JobPayload, check_arguments, checked_path

__all__ = [
    "Connection",
    "Recorder",
    "get_connection",
    "register_connection",
    "send",
    "set_recorder",
    "unregister_connection",
]


class Connection(Protocol):
    """Where dispatched jobs go (see the module docstring for the contract)."""

    def dispatch(self, payload: JobPayload) -> None:
        """Take ``payload``, or raise to refuse it."""


#: Called instead of a connection while the ``afterward_jobs`` fixture records.
Recorder = Callable[[Any, JobPayload, str], None]

_lock = threading.Lock()
_connections: dict[str, Connection] = {}
_recorder: Recorder | None = None


def register_connection(name: str, connection: Connection) -> None:
    """Make ``connection`` available as ``dispatch(connection=name)``; replaces any other.

    Raises:
        DispatchError: ``name`` is not a non-empty string or ``connection`` has no
            ``dispatch`` method.
    """
    if not isinstance(name, str) or not name:
        raise DispatchError(f"a connection name must be a non-empty string, got {name!r}")
    if not callable(getattr(connection, "dispatch", None)):
        raise DispatchError(f"connection {name!r} needs a dispatch(payload) method")
    with _lock:
        _connections[name] = connection


def unregister_connection(name: str) -> Connection | None:
    """Remove the connection ``name``; return it (``None`` if there was none)."""
    with _lock:
        return _connections.pop(name, None)


def get_connection(name: str) -> Connection | None:
    """Return the connection registered as ``name``, or ``None``."""
    return _connections.get(name)


def set_recorder(recorder: Recorder | None) -> Recorder | None:
    """Send every dispatch to ``recorder`` instead of its connection (``None``: stop).

    Returns the recorder that was installed before. Used by the ``afterward_jobs``
    pytest fixture.
    """
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


def _missing(name: str) -> DispatchError:
    if name == "queue":
        return DispatchError(
            "no 'queue' connection is configured: configure afterward's event bus for "
            "jobs (see docs/jobs.md), or register one with "
            "afterward.jobs.register_connection('queue', connection)"
        )
    known = ", ".join(sorted(_connections))
    return DispatchError(f"unknown job connection {name!r}; registered connections: {known}")


def _schedule(delay: object, at: object, priority: object) -> tuple[float, int]:
    """``(available_at, priority)`` from ``dispatch``'s arguments (0.0: now).

    Raises:
        DispatchError: a negative or non-finite ``delay``, a naive or non-datetime
            ``at``, both, or a ``priority`` that is not an int.
    """
    if delay is not None and at is not None:
        raise DispatchError("give delay= or at=, not both")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise DispatchError(f"priority must be an int, got {priority!r}")
    rank = priority or 0
    if at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
            raise DispatchError(f"at must be an aware datetime (with a time zone), got {at!r}")
        return at.timestamp(), rank  # in the past: as soon as possible
    if delay is None:
        return 0.0, rank
    if (
        not isinstance(delay, int | float)
        or isinstance(delay, bool)
        or not (delay >= 0 and math.isfinite(delay))
    ):
        raise DispatchError(f"delay must be None or a finite number of seconds >= 0, got {delay!r}")
    return (time.time() + delay if delay else 0.0), rank


def send(
    target: Any,
    signature_of: Callable[..., object],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: JobOptions,
    connection: str | None,
    delay: float | None,
    at: datetime | None = None,
    priority: int | None = None,
) -> JobPayload:
    """Check a job and hand it to its connection (``Job.dispatch`` and ``@job``).

    Raises:
        DispatchError: bad arguments, delay, time or priority, an unknown connection.
    """
    name = settings.default_connection if connection is None else connection
    driver = _connections.get(name) if isinstance(name, str) else None
    recorder = _recorder
    # While recording, "queue" may be missing (tests rarely run a backend); any other
    # unknown name would fail in production, so it fails here too.
    if driver is None and (recorder is None or name != "queue"):
        raise _missing(str(name))
    available_at, rank = _schedule(delay, at, priority)
    path = checked_path(target)
    json_args, json_kwargs = check_arguments(path, signature_of, args, kwargs)
    now = time.time()
    payload = JobPayload(
        id=str(uuid.uuid4()),
        path=path,
        args=json_args,
        kwargs=json_kwargs,
        correlation_id=_correlation_id.get() or new_correlation_id(),
        tries=options.tries,
        backoff=list(options.backoff),
        timeout=options.timeout,
        available_at=available_at,
        dispatched_at=now,
        priority=rank,
    )
    if recorder is not None:
        recorder(target, payload, str(name))
        return payload
    assert driver is not None
    tracing = _telemetry.tracing
    if tracing is None:
        driver.dispatch(payload)
    else:
        with tracing.dispatch(str(name), payload):
            driver.dispatch(payload)
    incr("jobs.dispatched")
    return payload
