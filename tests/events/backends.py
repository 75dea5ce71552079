"""The backends the conformance suite runs against: one ``(id, factory)`` per backend.

A factory gets the test's ``tmp_path`` and returns a bus URL private to that test; it may
call :func:`tests.support.require_service` (a missing service skips locally and fails
in CI). To add a backend, append an entry to :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from afterward.events import Event
from afterward.events._records import AppendRecord
from afterward.events._wire import record_of
from tests.events.distributed import kafka_bus_url, redis_bus_url

__all__ = ["BACKENDS", "BackendFactory", "record"]

BackendFactory = Callable[[Path], str]


def memory(tmp_path: Path) -> str:
    # A named store: every bus of this test opened on the URL shares it.
    return f"memory://{tmp_path.name}"


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bus.db'}"


#: (pytest id, factory); the kafka and redis backends add theirs here.
BACKENDS: list[tuple[str, BackendFactory]] = [
    ("memory", memory),
    ("sqlite", sqlite),
    # Marked params (the conftest passes them to pytest as they are), so `-m "not kafka"`
    # deselects them; the factories live in tests/events/distributed.py.
    ("kafka", pytest.param(kafka_bus_url, marks=pytest.mark.kafka)),  # type: ignore[list-item]
    ("redis", pytest.param(redis_bus_url, marks=pytest.mark.redis)),  # type: ignore[list-item]
]


def record(
    topic: str,
    data: object,
    *,
    id: str,
    key: str | None = None,
    at: float | None = None,
    cid: str | None = None,
) -> AppendRecord:
    """An event's record as the bus would append it, for tests that call a backend's
    primitives directly."""
    when = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
    event = Event(id=id, topic=topic, data=data, key=key, occurred_at=when, correlation_id=cid)
    return record_of(event, "tests")
