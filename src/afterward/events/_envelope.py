"""What a handler sees: :class:`Event` and :class:`DeadLetter`, and topic names.

How an event travels (CloudEvents headers and a JSON value) is :mod:`._wire`'s.
``attempt`` is not stored: it is the delivery attempt of the handler run that sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from afterward._exceptions import PublishError

__all__ = [
    "MAX_EVENT_BYTES",
    "TOPIC_PATTERN",
    "DeadLetter",
    "Event",
    "validate_topic",
]

#: Default cap on an encoded event (the envelope included): 1 MiB.
MAX_EVENT_BYTES = 1024 * 1024
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}")


@dataclass(slots=True)
class Event:
    """One event, as a handler sees it.

    Attributes:
        id: unique ID: the producer's own string, else a new UUID.
        topic: the topic it was published to.
        key: the partition key (same key, same order), or ``None``.
        version: the producer's version number for the key, or ``None``.
        data: the JSON payload (the record's bytes for a ``raw=True`` subscription).
        correlation_id: the ID of the request (or job, or event) that published it.
        occurred_at: when it was published (aware, UTC).
        attempt: the delivery attempt of this handler run, from 1.
        headers: string metadata.
        traceparent: the W3C trace context it was published in (``traceparent`` on the
            wire), or ``None``; a handler's span continues that trace.
        tracestate: the W3C ``tracestate`` that came with it, or ``None``.
        session: inside a handler subscribed with ``inbox=``, the SQLAlchemy session
            whose transaction records the event as processed; ``None`` otherwise.
    """

    id: str
    topic: str
    data: Any
    key: str | None = None
    version: int | None = None
    correlation_id: str | None = None
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    attempt: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    traceparent: str | None = field(default=None, repr=False, compare=False)
    tracestate: str | None = field(default=None, repr=False, compare=False)
    session: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a group's handler failed on after all its retries.

    Attributes:
        id: the dead letter's own ID (for ``retry_dead_letter``/``discard_dead_letter``).
        event: the event, ``attempt`` set to the attempts made.
        group: the consumer group whose handler failed.
        error: ``"ExceptionType: message"`` of the last failure.
        traceback: the formatted traceback of the last failure.
        attempts: how many times the handler ran.
        failed_at: when the last attempt failed (aware, UTC).
    """

    id: str
    event: Event
    group: str
    error: str
    traceback: str
    attempts: int
    failed_at: datetime


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name, else raise :class:`PublishError`."""
    if not isinstance(topic, str) or TOPIC_PATTERN.fullmatch(topic) is None:
        raise PublishError(
            f"invalid topic name {topic!r}: use 1-249 characters from [A-Za-z0-9._-]",
            topic=topic if isinstance(topic, str) else None,
        )
    return topic
