"""The seam itself: every backend's primitives, called directly (no bus).

The conformance suite (test_conformance.py) checks the guarantees a bus builds on these;
this file checks the primitives' own contracts (afterward.events._protocols), so a new
backend learns which one is wrong before a bus-level test fails for a reason far away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from afterward.events._backend import Backend
from afterward.events._protocols import ClusterLog, EventLog, Log, PositionsAtOnce, StateStore
from afterward.events._records import AppendRecord, Attempt, Done, StoredDeadLetter, StoredEvent
from afterward.events.backends import open_backend
from tests.events.backends import record


@pytest.fixture
async def backend(bus_url: str) -> AsyncIterator[Backend]:
    opened = open_backend(bus_url)
    await opened.connect()
    try:
        yield opened
    finally:
        await opened.aclose()


def _record(topic: str, n: int, key: str | None = None, at: float | None = None) -> AppendRecord:
    return record(topic, n, id=f"e{n}", key=key, at=at, cid="c")


async def _read_all(log: Log, topic: str) -> list[int]:
    """Every offset of partition 0 of ``topic``, reading in small pages."""
    offsets: list[int] = []
    position = 0
    while True:
        page = [s for s in await log.read(topic, {0: position}, 2) if s.partition == 0]
        if not page:
            return offsets
        offsets += [s.offset for s in page]
        position = page[-1].offset + 1


async def test_backend_is_made_of_capabilities(backend: Backend) -> None:
    assert isinstance(backend.log, Log)
    assert isinstance(backend.state, StateStore)
    assert backend.separate == (not isinstance(backend.log, EventLog))


async def test_append_read_and_end_offsets(backend: Backend) -> None:
    log = backend.log
    assert await log.end_offsets("p") == {}
    await log.append([_record("p", n, key="k") for n in range(3)])
    await log.append([_record("p", 3, key="k")])
    ends = await log.end_offsets("p")
    assert sum(ends.values()) == 4
    assert await _read_all(log, "p") == [0, 1, 2, 3]
    later = await log.read("p", {0: 2}, 10)
    assert [s.offset for s in later if s.partition == 0] == [2, 3]
    assert await log.read("p", dict(ends), 10) == []


async def test_offsets_for_time(backend: Backend) -> None:
    log = backend.log
    base = datetime.now(UTC).timestamp() - 100
    await log.append([_record("ts", n, key="k", at=base + n * 10) for n in range(3)])
    middle = datetime.fromtimestamp(base + 10, UTC)
    assert (await log.offsets_for_time("ts", middle))[0] == 1
    future = datetime.now(UTC) + timedelta(days=1)
    assert await log.offsets_for_time("ts", future) == await log.end_offsets("ts")


async def test_register_positions_and_groups(backend: Backend) -> None:
    state = backend.state
    assert await state.positions("g", "t") is None
    await state.register("g", "t", {0: 2})
    await state.register("g", "t", {0: 9})  # already registered: unchanged
    assert await state.positions("g", "t") == {0: 2}
    assert "t" in (await state.groups())["g"]


async def test_every_position_reads_what_positions_reads(backend: Backend) -> None:
    state = backend.state
    if not isinstance(state, PositionsAtOnce):
        pytest.fail(f"{backend.scheme}: the state store has no every_position")
    await state.register("g", "t", {0: 2})
    await state.register("h", "t", {0: 0})
    await state.register("g", "u", {})
    await state.commit("h", "t", {0: 7}, [])
    found = await state.every_position()
    pairs = {(g, t) for g, topics in (await state.groups()).items() for t in topics}
    assert set(found) == pairs
    for group, topic in pairs:
        assert found[(group, topic)] == await state.positions(group, topic)
    assert found[("h", "t")] == {0: 7}


async def test_commit_records_ids_and_raises_versions_only(backend: Backend) -> None:
    state = backend.state
    await state.register("g", "t", {})
    await state.commit("g", "t", {0: 3}, [Done("a", "k", 5), Done("b", processed=False)])
    assert await state.positions("g", "t") == {0: 3}
    assert await state.processed("g", ["a", "b", "c"]) == {"a"}
    assert await state.processed("other", ["a"]) == set()
    await state.commit("g", "t", {}, [Done("c", "k", 2)])  # a lower version never lowers
    assert await state.key_versions("g", "t", ["k", "unknown"]) == {"k": 5}
    assert await state.positions("g", "t") == {0: 3}  # positions not given: unchanged


async def test_rewind_keeps_or_forgets(backend: Backend) -> None:
    state = backend.state
    await state.register("g", "t", {})
    await state.commit("g", "t", {0: 5}, [Done("a", "k", 1)])
    await state.rewind("g", "t", {0: 1}, forget=False)
    assert await state.positions("g", "t") == {0: 1}
    assert await state.processed("g", ["a"]) == {"a"}
    await state.rewind("g", "t", {0: 0}, forget=True)
    assert await state.processed("g", ["a"]) == set()
    assert await state.key_versions("g", "t", ["k"]) == {}


async def test_claims_exclude_other_owners_until_released_or_expired(backend: Backend) -> None:
    state = backend.state
    assert await state.claim("g", "t", "one", 30)
    assert await state.claim("g", "t", "one", 30)  # renewal
    assert not await state.claim("g", "t", "two", 30)
    await state.release("g", "t", "two")  # not the holder: nothing happens
    assert not await state.claim("g", "t", "two", 30)
    await state.release("g", "t", "one")
    assert await state.claim("g", "t", "two", 0.2)
    await asyncio.sleep(0.4)  # the claim's own expiry is what is tested here
    assert await state.claim("g", "t", "one", 30)


async def test_dead_letter_store(backend: Backend) -> None:
    state = backend.state
    appended = _record("t", 1)
    letter = StoredDeadLetter(
        id="d1",
        group="g",
        record=StoredEvent("t", 0, 3, appended.value, appended.headers, "k", 5.0),
        error="ValueError: no",
        traceback="tb",
        attempts=4,
        failed_at=datetime.now(UTC),
    )
    await state.add_dead_letter(letter)
    assert [d.id for d in await state.dead_letters("g")] == ["d1"]
    assert await state.dead_letters("other") == []
    stored = await state.dead_letter("d1")
    assert stored is not None and stored.record == letter.record and stored.attempts == 4
    await state.update_dead_letter(replace(letter, error="ValueError: again", attempts=5))
    again = await state.dead_letter("d1")
    assert again is not None and (again.attempts, again.error) == (5, "ValueError: again")
    assert await state.delete_dead_letter("d1")
    assert not await state.delete_dead_letter("d1")
    assert await state.dead_letter("d1") is None


async def test_flow_capability_where_present(backend: Backend) -> None:
    flow = backend.flow
    if flow is None:
        assert backend.scheme in ("kafka", "redis")  # the backends that keep no flows
        return
    await backend.log.append([_record("f", n) for n in range(2)])
    assert [s.offset for s in await flow.events_for("c", 10)] == [0, 1]
    now = datetime.now(UTC)
    await flow.add_attempts([Attempt("c", "g", "f", "e0", 1, "handled", now)])
    assert [a.outcome for a in await flow.attempts_for("c", 10)] == ["handled"]


async def test_begin_batch_tells_a_redelivered_batch_apart(backend: Backend) -> None:
    state = backend.state
    assert await state.begin_batch("g", "t", {0: (0, 500), 1: (0, 10)}) == {}
    await state.commit("g", "t", {1: 10}, [])  # partition 1's batch committed
    # A consumer died in partition 0's batch: the next one starts there again.
    assert await state.begin_batch("g", "t", {0: (0, 500), 1: (10, 20)}) == {0: 500}
    assert await state.begin_batch("g", "t", {0: (3, 500)}) == {0: 500}  # still inside it
    assert await state.begin_batch("g", "t", {0: (500, 900)}) == {}  # past it: a new batch
    assert await state.begin_batch("other", "t", {0: (0, 500)}) == {}  # groups are apart


async def test_count_attempt_counts_per_group_and_event(backend: Backend) -> None:
    state = backend.state
    assert [await state.count_attempt("g", "t", "e1") for _ in range(3)] == [1, 2, 3]
    assert await state.count_attempt("g", "t", "e2") == 1
    assert await state.count_attempt("h", "t", "e1") == 1


async def test_a_state_store_binds_to_one_cluster(backend: Backend) -> None:
    # A store kept apart from a log that knows its cluster (Kafka) was bound at connect.
    log = backend.log
    first = "cluster-a"
    if backend.separate and isinstance(log, ClusterLog):
        first = await log.cluster_id()
    assert await backend.state.bind_cluster("cluster-a") == first
    assert await backend.state.bind_cluster("cluster-b") == first  # the first stays
