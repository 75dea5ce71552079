"""Plain-dict views of events, dead letters and failed jobs, for tables and ``--json``."""

from __future__ import annotations

from typing import Any

from afterward.cli._output import to_jsonable

__all__ = ["dead_letter_record", "event_record", "failed_job_record", "short"]


def short(text: object, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters with an ellipsis."""
    line = str(text or "").strip().splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


_EVENT_FIELDS = (
    "id",
    "topic",
    "key",
    "version",
    "data",
    "correlation_id",
    "occurred_at",
    "attempt",
    "headers",
)


def event_record(event: Any) -> dict[str, Any]:
    """An ``Event`` as a JSON-ready dict with the contract's fields."""
    return {name: to_jsonable(getattr(event, name, None)) for name in _EVENT_FIELDS}


def dead_letter_record(letter: Any) -> dict[str, Any]:
    """A ``DeadLetter`` as a JSON-ready dict."""
    return {
        "id": str(letter.id),
        "group": letter.group,
        "attempts": letter.attempts,
        "failed_at": to_jsonable(letter.failed_at),
        "error": letter.error,
        "traceback": letter.traceback,
        "event": event_record(letter.event),
    }


def failed_job_record(job: Any) -> dict[str, Any]:
    """A failed job as a JSON-ready dict (whatever fields the store gives, plus ``id``)."""
    record = to_jsonable(job)
    if not isinstance(record, dict):
        record = {"value": record}
    record["id"] = str(job.id)
    return record
