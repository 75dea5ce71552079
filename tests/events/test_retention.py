"""Retention: events past it are gone for new groups, groups see everything newer, the
state goes with the events, the SQLite file stops growing (API.md section 5).

The events' deletion is tested on the backends that prune their log (``pruning_bus_url``);
on Kafka the broker deletes by the topics' ``retention.ms``, which these tests read back
(tansu, the test broker, stores it but deletes nothing by time), and the state store's
pruning runs on every backend (``bus_url``)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from afterward import ConfigError
from afterward.events import Event, EventBus
from afterward.events import _prune as prune_module
from tests.events.backends import record


async def _old_and_new(bus: EventBus, topic: str = "t", old: int = 5, new: int = 3) -> None:
    """``old`` events from two hours ago, then ``new`` ones from now."""
    log = bus._core.backend.log
    two_hours_ago = time.time() - 7200
    await log.append(
        [record(topic, n, id=f"old-{n}", key="k", at=two_hours_ago + n) for n in range(old)]
    )
    await log.append([record(topic, n, id=f"new-{n}", key="k") for n in range(new)])


async def _handled(bus: EventBus, group: str, topic: str = "t") -> list[str]:
    """What ``group`` handles when it drains now (its handler subscribed on first use)."""
    seen: list[str] = []
    sub = bus._core.subs.get((group, topic))
    if sub is None:

        @bus.subscribe(topic, group=group)
        async def handle(event: Event) -> None:
            _seen[(group, topic)].append(event.id)

    _seen[(group, topic)] = seen
    await bus.drain([group])
    return seen


_seen: dict[tuple[str, str], list[str]] = {}


@pytest.fixture
async def hour_bus(pruning_bus_url: str) -> EventBus:
    bus = EventBus(pruning_bus_url, retention=timedelta(hours=1))
    if bus._core.backend.prunable is None:
        pytest.fail(f"{pruning_bus_url}: the backend cannot prune its events")
    await bus.connect()
    return bus


async def test_events_past_the_retention_are_gone_for_new_groups(hour_bus: EventBus) -> None:
    await _old_and_new(hour_bus)
    assert await _handled(hour_bus, "before") == [f"old-{n}" for n in range(5)] + [
        f"new-{n}" for n in range(3)
    ]
    pruned = await hour_bus.prune()
    assert pruned.events == 5
    assert await _handled(hour_bus, "after") == ["new-0", "new-1", "new-2"]
    assert await hour_bus.event_count("t") == 8  # offsets go on: the end is unchanged
    storage = (await hour_bus.storage())["t"]
    assert storage.events == 3 and storage.bytes > 0
    assert storage.oldest is not None and storage.oldest.timestamp() > time.time() - 3600
    later = await hour_bus.publish("t", "later", key="k")
    assert await _handled(hour_bus, "before") == [later.id]  # just the new one
    assert (await hour_bus.prune()).events == 0
    await hour_bus.aclose()


async def test_the_newest_event_stays_and_offsets_go_on(hour_bus: EventBus) -> None:
    await _old_and_new(hour_bus, old=4, new=0)
    assert (await hour_bus.prune()).events == 3  # the newest stays: offsets follow it
    fresh = await hour_bus.publish("t", "fresh", key="k")
    assert await hour_bus.event_count("t") == 5
    assert await _handled(hour_bus, "g") == ["old-3", fresh.id]
    await hour_bus.aclose()


async def test_a_topic_can_keep_everything_or_keep_less(hour_bus: EventBus) -> None:
    await _old_and_new(hour_bus, "forever")
    await _old_and_new(hour_bus, "short", old=0, new=3)
    hour_bus.retention("forever", None)
    hour_bus.retention("short", timedelta(milliseconds=1))
    await asyncio.sleep(0.01)  # the 1 ms retention's age is the point
    pruned = await hour_bus.prune()
    assert pruned.events == 2  # short: all but its newest; forever: nothing
    assert (await hour_bus.storage())["forever"].events == 8
    with pytest.raises(ConfigError, match="timedelta"):
        hour_bus.retention("t", timedelta(0))
    with pytest.raises(ConfigError, match="timedelta"):
        EventBus("memory://", retention=3600)  # type: ignore[arg-type]
    await hour_bus.aclose()


async def test_processed_ids_go_with_the_longest_retention(bus_url: str) -> None:
    bus = EventBus(bus_url, retention=timedelta(milliseconds=50))
    await bus.connect()
    await _old_and_new(bus, old=0, new=3)
    await _handled(bus, "g")
    state = bus._core.backend.state
    assert await state.processed("g", ["new-0", "new-1"]) == {"new-0", "new-1"}
    await asyncio.sleep(0.1)  # past the 50 ms retention
    pruned = await bus.prune()
    assert pruned.processed == 3
    assert await state.processed("g", ["new-0", "new-1"]) == set()
    bus.retention("t", None)  # one topic keeps everything: so does the state
    await _old_and_new(bus, "t", old=0, new=1)
    await bus.drain()
    await asyncio.sleep(0.1)
    assert (await bus.prune()).processed == 0
    await bus.aclose()


async def test_a_replay_past_the_retention_says_so(
    hour_bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    await _old_and_new(hour_bus)
    await hour_bus.prune()
    await _handled(hour_bus, "g")
    with caplog.at_level("WARNING", logger="afterward.events"):
        await hour_bus.replay("t", "g", from_offset=0, reprocess=True)
    assert "reaches back past the retention" in caplog.text
    assert await _handled(hour_bus, "g2") == ["new-0", "new-1", "new-2"]
    await hour_bus.aclose()


async def test_run_prunes_in_the_background(
    pruning_bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = EventBus(pruning_bus_url, retention=timedelta(hours=1))
    await bus.connect()
    monkeypatch.setattr(prune_module, "interval", lambda core: 0.05)

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None: ...

    await _old_and_new(bus)
    running = asyncio.create_task(bus.run())
    try:
        async with asyncio.timeout(20):
            while (await bus.storage()).get("t") is None or (await bus.storage())["t"].events != 3:
                await asyncio.sleep(0.02)
    finally:
        bus.stop()
        await asyncio.wait_for(running, 10)
    await bus.aclose()


async def test_the_sqlite_file_stops_growing(tmp_path: Path) -> None:
    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}", retention=timedelta(milliseconds=50))
    await bus.connect()
    seen = 0

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        nonlocal seen
        seen += 1

    sizes = []
    for cycle in range(6):
        log = bus._core.backend.log
        old = time.time() - 7200
        batch = [
            record("t", {"n": n, "pad": "x" * 200}, id=f"{cycle}-{n}", key=f"k{n % 7}", at=old)
            for n in range(2000)
        ]
        await log.append(batch)
        await bus.drain()
        await asyncio.sleep(0.1)  # past the retention: events, IDs and history all go
        await bus.prune()
        files = [tmp_path / "bus.db", tmp_path / "bus.db-wal"]
        sizes.append(sum(f.stat().st_size for f in files if f.exists()))
    assert seen == 6 * 2000
    # Freed pages are reused: after the first cycles the file holds steady.
    assert sizes[-1] <= sizes[2] * 1.1, sizes
    await bus.aclose()
