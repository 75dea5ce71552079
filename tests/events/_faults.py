"""Checks shared by the Kafka and Redis fault tests (real processes, kill -9)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from afterward.events import EventBus
from tests.events.procs import spawn
from tests.support import wait_for

__all__ = [
    "effects",
    "effects_by",
    "kill_9_mid_batch",
    "make_effects_db",
    "poison_goes_to_dead_letters",
]


def make_effects_db(path: Path) -> Path:
    """A SQLite file with the ``effects`` table the consumer processes append to."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE effects (id TEXT, pid INTEGER)")
    return path


def effects(path: Path) -> list[str]:
    """Event IDs whose effect ran, in the order they ran."""
    return [event_id for event_id, _ in effects_by(path)]


def effects_by(path: Path) -> list[tuple[str, int]]:
    """(event ID, process ID) of every effect, in the order they ran."""
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT id, pid FROM effects ORDER BY rowid"))


async def kill_9_mid_batch(url: str, effects_db: Path) -> None:
    """Two consumer processes, one killed (SIGKILL) mid-batch: with the inbox, every
    effect exactly once; nothing is lost."""
    async with EventBus(url) as bus:
        # One by one: tansu under-reports the end offset after a batched produce (a
        # broker quirk, see kafka_broker.py), which would make the consumers stop early.
        for n in range(50):
            await bus.publish("t", {"n": n}, id=f"e{n}")
    crashed = spawn("consume", url, str(effects_db), 30, True, True)
    # The second consumer joins while the first is mid-stream; it takes over once the
    # dead one's claim expires (claim_ttl=1 s in the consumer processes).
    wait_for(lambda: effects(effects_db), timeout=30)
    done = spawn("consume", url, str(effects_db), None, True, True)
    assert crashed.wait(timeout=60) == -9
    assert done.wait(timeout=60) == 0
    counts = Counter(effects(effects_db))
    assert set(counts) == {f"e{n}" for n in range(50)}
    assert [i for i, c in counts.items() if c > 1] == []
    async with EventBus(url) as bus:
        assert (await bus.lag())["g"]["t"] == 0


async def poison_goes_to_dead_letters(url: str) -> None:
    """A message no handler can take lands in the dead letters; the group moves on."""
    from afterward.events import Event

    async with EventBus(url) as bus:
        seen: list[int] = []

        @bus.subscribe("t", group="g", retries=1, backoff=0)
        async def handle(event: Event) -> None:
            if event.data == "poison":
                raise ValueError("cannot parse")
            seen.append(event.data)

        await bus.publish("t", 1, key="k")
        await bus.publish("t", "poison", key="k")
        await bus.publish("t", 2, key="k")
        await bus.drain()
        assert seen == [1, 2]
        [letter] = await bus.dead_letters_async("g")
        assert (letter.event.data, letter.attempts) == ("poison", 2)
        assert "cannot parse" in letter.error
        await bus.discard_dead_letter(letter.id)
        assert await bus.dead_letters_async("g") == []
