"""A correlation ID's flow from the bus: ``events_for`` and ``history``.

The optional ``FlowLog`` capability (memory and SQLite); a backend without it still
consumes, and those methods return empty lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from afterward import correlate
from afterward.events import Attempt, Event, EventBus
from afterward.events._backend import Backend
from afterward.events._protocols import EventLog, FlowLog
from afterward.events.backends.memory import _log as memory_backend
from tests.events.backends import memory, sqlite

CID = "flow-cid-1"


@pytest.fixture(params=[memory, sqlite], ids=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    made: str = request.param(tmp_path)
    return made


def _app(url: str, state: dict[str, Any]) -> EventBus:
    bus = EventBus(url)

    @bus.subscribe("order.completed", group="billing")
    async def bill(event: Event) -> None:
        pass

    @bus.subscribe("order.completed", group="mail", retries=1, backoff=0)
    async def mail(event: Event) -> None:
        if state["broken"]:
            raise ConnectionError("smtp down")

    return bus


def _outcomes(attempts: Sequence[Attempt], group: str) -> list[tuple[str, int, str | None]]:
    return [(a.outcome, a.attempt, a.error) for a in attempts if a.group == group]


def test_events_and_attempts_of_one_correlation_id(url: str) -> None:
    state = {"broken": True}
    app = _app(url, state)
    with correlate(CID):
        first = app.publish_sync("order.completed", {"n": 1}, key="o-1", version=2)
        app.publish_sync("order.completed", {"n": 1}, key="o-1", version=2, id=first.id)
        app.publish_sync("order.completed", {"n": 0}, key="o-1", version=1)  # stale
    with correlate("another-flow"):
        app.publish_sync("order.completed", {"n": 9})
    app.drain_sync()

    # Another bus on the same URL (the dashboard's, in another process) reads it all.
    reader = EventBus(url)
    events = reader.events_for(CID)
    assert [e.data["n"] for e in events] == [1, 1, 0]
    assert {e.correlation_id for e in events} == {CID}
    history = reader.history(CID)
    assert history == sorted(history, key=lambda a: a.at)
    assert {a.correlation_id for a in history} == {CID}
    assert _outcomes(history, "billing") == [
        ("handled", 1, None),
        ("duplicate", 1, None),
        ("stale", 1, None),
    ]
    mail = _outcomes(history, "mail")
    assert mail[:3] == [
        ("failed", 1, "ConnectionError: smtp down"),
        ("failed", 2, "ConnectionError: smtp down"),
        ("dead_lettered", 2, "ConnectionError: smtp down"),
    ]
    assert next(a.event_id for a in history if a.group == "billing") == first.id

    # A dead-letter retry is part of the history too.
    state["broken"] = False
    (letter,) = [d for d in app.dead_letters("mail") if d.event.id == first.id]
    assert app.retry_dead_letter_sync(letter.id)
    retried = [a for a in reader.history(CID) if a.group == "mail" and a.attempt == 3]
    assert [(a.outcome, a.event_id) for a in retried] == [("handled", first.id)]
    assert reader.events_for("nobody") == [] and reader.history("nobody") == []
    assert len(reader.history(CID, limit=2)) == 2


async def test_async_twins(url: str) -> None:
    bus = _app(url, {"broken": False})
    with correlate(CID):
        event = await bus.publish("order.completed", {"n": 1})
    await bus.drain()
    assert [e.id for e in await bus.events_for_async(CID)] == [event.id]
    assert {(a.group, a.outcome) for a in await bus.history_async(CID)} == {
        ("billing", "handled"),
        ("mail", "handled"),
    }
    await bus.aclose()


def test_sqlite_keeps_the_flow_across_restarts(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    app = _app(url, {"broken": False})
    with correlate(CID):
        app.publish_sync("order.completed", {"n": 1})
    app.drain_sync()
    app.publish_sync("order.completed", {"n": 2})  # another correlation ID
    app._core.sync(app.aclose())
    again = EventBus(url)
    assert [e.data for e in again.events_for(CID)] == [{"n": 1}]
    assert len(again.history(CID)) == 2


def test_memory_history_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_backend, "HISTORY_LIMIT", 3)
    bus = _app("memory://", {"broken": False})
    for n in range(4):
        with correlate(f"cid-{n}"):
            bus.publish_sync("order.completed", {"n": n})
    bus.drain_sync()
    kept = [a.correlation_id for n in range(4) for a in bus.history(f"cid-{n}")]
    assert len(kept) == 3 and "cid-0" not in kept


class _Plain:
    """An event log without the flow capability (like the Kafka and Redis backends)."""

    def __init__(self, log: EventLog) -> None:
        self._inner = log
        self.scheme = log.scheme

    def __getattr__(self, name: str) -> Any:
        if name in ("events_for", "add_attempts", "attempts_for"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_a_backend_without_the_capability_still_consumes() -> None:
    state = {"broken": True}
    bus = _app("memory://", state)
    backend = bus._core.backend
    plain = _Plain(backend.log)
    assert not isinstance(plain, FlowLog) and backend.flow is backend.log
    bus._core.backend = Backend(plain, backend.state)
    with correlate(CID):
        bus.publish_sync("order.completed", {"n": 1})
    bus.drain_sync()
    (letter,) = bus.dead_letters()
    state["broken"] = False
    assert bus.retry_dead_letter_sync(letter.id)
    assert bus.events_for(CID) == [] and bus.history(CID) == []


def test_keep_history_false_records_no_attempts(url: str) -> None:
    bus = _app(url, {"broken": True})
    # as EventBus(url, keep_history=False)
    bus._core.settings = replace(bus._core.settings, keep_history=False)
    assert EventBus(url, keep_history=False).keep_history is False
    with correlate(CID):
        bus.publish_sync("order.completed", {"n": 1})
    bus.drain_sync()
    (letter,) = bus.dead_letters()
    bus.retry_dead_letter_sync(letter.id)
    assert [e.data for e in bus.events_for(CID)] == [{"n": 1}]
    assert bus.history(CID) == []
