"""An in-process flight recorder for the flow timeline and recent failures.

The bus stores events and dead letters; what happened *around* them in this process
(deferred callbacks, HTTP batch calls, each handler attempt) lives only here. A
:class:`Recorder` keeps the last ``capacity`` steps in memory, indexed by correlation
ID, and :meth:`Recorder.install` also captures afterward's own log records that carry
a correlation ID (failed deferred callbacks, lost work, job attempts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Recorder", "Step", "default_recorder"]


@dataclass(frozen=True)
class Step:
    """One thing that happened for a correlation ID.

    Attributes:
        at: Unix time.
        correlation_id: the flow it belongs to.
        kind: ``request``, ``http``, ``deferred``, ``publish``, ``handler``, ``retry``,
            ``dead_letter``, ``job`` or ``log``.
        title: a short line (plain text; the dashboard escapes it).
        ok: ``True`` success, ``False`` failure, ``None`` neutral.
        detail: extra fields shown on the timeline.
    """

    at: float
    correlation_id: str
    kind: str
    title: str
    ok: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class _LogCapture(logging.Handler):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.INFO)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        cid = getattr(record, "correlation_id", None)
        if not cid:
            return
        self.recorder.record(
            str(cid),
            "log",
            record.getMessage().splitlines()[0][:300],
            ok=False if record.levelno >= logging.ERROR else None,
            logger=record.name,
            level=record.levelname,
        )


class Recorder:
    """Remember the last ``capacity`` steps of every flow seen in this process.

    Example:
        >>> recorder = Recorder()
        >>> recorder.record("cid-1", "http", "POST /charge 200", ok=True, ms=41.0)
        >>> [s.title for s in recorder.flow("cid-1")]
        ['POST /charge 200']
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self._steps: deque[Step] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._handler: _LogCapture | None = None

    def record(
        self,
        correlation_id: str | None,
        kind: str,
        title: str,
        *,
        ok: bool | None = None,
        **detail: Any,
    ) -> None:
        """Add a step to ``correlation_id``'s flow (ignored when the ID is ``None``)."""
        if not correlation_id:
            return
        step = Step(time.time(), correlation_id, kind, title, ok, detail)
        with self._lock:
            self._steps.append(step)

    def flow(self, correlation_id: str) -> list[Step]:
        """The steps of one flow, oldest first."""
        with self._lock:
            return [s for s in self._steps if s.correlation_id == correlation_id]

    def recent(
        self, kind: str | None = None, *, failed_only: bool = False, limit: int = 50
    ) -> list[Step]:
        """The newest steps, newest first, optionally of one kind or failures only."""
        with self._lock:
            steps = list(self._steps)
        picked = [
            s
            for s in reversed(steps)
            if (kind is None or s.kind == kind) and (not failed_only or s.ok is False)
        ]
        return picked[:limit]

    def correlation_ids(self, limit: int = 20) -> list[str]:
        """The most recently active correlation IDs, newest first."""
        seen: dict[str, None] = {}
        with self._lock:
            for step in reversed(self._steps):
                seen.setdefault(step.correlation_id, None)
                if len(seen) >= limit:
                    break
        return list(seen)

    def install(self, logger: str = "afterward") -> Recorder:
        """Also record ``logger``'s records that carry a correlation ID. Idempotent."""
        if self._handler is None:
            self._handler = _LogCapture(self)
            logging.getLogger(logger).addHandler(self._handler)
        return self

    def uninstall(self, logger: str = "afterward") -> None:
        """Stop capturing log records."""
        if self._handler is not None:
            logging.getLogger(logger).removeHandler(self._handler)
            self._handler = None


_default: Recorder | None = None
_default_lock = threading.Lock()


def default_recorder() -> Recorder:
    """The process-wide recorder dashboards use unless given one (installed once)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Recorder().install()
        return _default
