"""Logging support: the correlation ID on every log record, and JSON lines.

Example:
    >>> handler = logging.StreamHandler()
    >>> handler.addFilter(CorrelationIdFilter())
    >>> handler.setFormatter(logging.Formatter("%(correlation_id)s %(message)s"))

    >>> handler.setFormatter(JsonFormatter())      # one JSON object per line
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from afterward import _telemetry
from afterward._context import correlation_id

__all__ = ["CorrelationIdFilter", "JsonFormatter"]

#: What every LogRecord has: the rest of its ``__dict__`` came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_OURS = frozenset(
    {"correlation_id", "otelTraceID", "otelSpanID", "otelServiceName", "otelTraceSampled"}
)


class CorrelationIdFilter(logging.Filter):
    """Set ``record.correlation_id`` to the current correlation ID.

    Records logged outside any request, job or handler get ``default`` (``"-"``).
    A record that already carries an ID (afterward's own failure logs do) keeps it.
    """

    def __init__(self, name: str = "", default: str = "-") -> None:
        super().__init__(name)
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.correlation_id`` (unless it has one) and keep the record."""
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = correlation_id() or self.default
        return True


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line, for log shippers.

    Keys: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``,
    ``correlation_id`` (the record's, else the current one), ``trace_id`` and
    ``span_id`` (hex, while an OpenTelemetry span is current and
    :func:`afterward.integrations.opentelemetry.instrument` ran, or as OpenTelemetry's
    logging instrumentation put them on the record), ``exception`` and ``stack`` (the
    formatted traceback and stack, when there is one), then the fields given with
    ``extra=`` and ``static`` ones. A value that is not JSON is written as its ``str``.

    Example:
        >>> handler = logging.StreamHandler()
        >>> handler.setFormatter(JsonFormatter(static={"service": "shop"}))
        >>> logging.getLogger("shop").addHandler(handler)
        {"time": "2026-12-02T10:30:00.123Z", "level": "INFO", "logger": "shop", ...}

    Args:
        static: fields added to every line (the service, the environment...).
    """

    def __init__(self, *, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "time": when.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        cid = getattr(record, "correlation_id", None) or correlation_id()
        if cid is not None:
            line["correlation_id"] = cid
        ids = _trace_ids(record)
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _OURS and key not in line:
                line[key] = value
        for key, value in self.static.items():
            line.setdefault(key, value)
        return json.dumps(line, ensure_ascii=False, default=str)


def _trace_ids(record: logging.LogRecord) -> tuple[str, str] | None:
    """OpenTelemetry's logging instrumentation's IDs on the record, else the current span's."""
    trace_id = getattr(record, "otelTraceID", None)
    span_id = getattr(record, "otelSpanID", None)
    if trace_id and span_id and trace_id != "0":
        return str(trace_id), str(span_id)
    tracing = _telemetry.tracing
    return None if tracing is None else tracing.current_ids()
