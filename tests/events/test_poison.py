"""Poison records never stop a group: a handler that keeps killing its consumer is
dead-lettered after the group's retries, and every other event is handled once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from afterward.events import EventBus
from tests.events.backends import BACKENDS, BackendFactory
from tests.events.procs import spawn

SHARED = [(name, factory) for name, factory in BACKENDS if name != "memory"]


@pytest.fixture(params=[f for _, f in SHARED], ids=[n for n, _ in SHARED])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    factory: BackendFactory = request.param
    return factory(tmp_path)


def test_a_handler_that_kills_its_consumer_is_dead_lettered(
    shared_url: str, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.db"
    with sqlite3.connect(effects) as conn:
        conn.execute("CREATE TABLE effects (id TEXT, pid INTEGER)")
    bus = EventBus(shared_url)
    for n in range(60):
        bus.publish_sync("t", {"n": n}, key=f"k{n % 3}", id=f"e{n}")
    exits = []
    while True:
        consumer = spawn("consume_poison", shared_url, str(effects), 17)
        exits.append(consumer.wait(timeout=120))
        if exits[-1] == 0:
            break
        assert len(exits) < 6, f"the poison event kept the group stuck: exits {exits}"
    # One delivery in a full batch, then retries=2 counted deliveries, each killed.
    assert exits == [9, 9, 9, 0]
    with sqlite3.connect(effects) as conn:
        handled = [row[0] for row in conn.execute("SELECT id FROM effects")]
    assert set(handled) == {f"e{n}" for n in range(60) if n != 17}
    # Without an inbox, the batch the first crash cut short repeats its effects once
    # (at-least-once); the counted redeliveries record each success at once, so the
    # two later crashes repeat nothing, and nothing after that batch ran twice.
    repeated = {h for h in handled if handled.count(h) > 1}
    assert all(handled.count(h) == 2 for h in repeated)
    assert all(int(h[1:]) < 20 for h in repeated)  # 20: the consumer's batch size
    (letter,) = bus.dead_letters("p")
    assert letter.event.id == "e17"
    assert letter.error.startswith("ConsumerDied:") and letter.attempts == 3
    assert bus.lag_sync()["p"]["t"] == 0
