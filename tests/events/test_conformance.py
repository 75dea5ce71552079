"""The guarantees of section 5, the same on every backend (see tests/events/backends.py)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

import afterward
from afterward import ConfigError, PublishError, SchemaError, defer
from afterward.events import Event, EventBus
from afterward.events import _consumers as consumers


async def test_every_group_gets_every_event_once(bus: EventBus) -> None:
    seen: dict[str, list[int]] = defaultdict(list)

    @bus.subscribe("order.completed", group="billing")
    async def billing(event: Event) -> None:
        seen["billing"].append(event.data["n"])

    @bus.subscribe("order.completed", group="crm")
    def crm(event: Event) -> None:  # sync handlers run in a thread
        seen["crm"].append(event.data["n"])

    for n in range(5):
        await bus.publish("order.completed", {"n": n})
    await bus.drain()
    await bus.drain()
    # Keyless events promise no order (several partitions on Kafka): compare as sets.
    assert {g: sorted(ns) for g, ns in seen.items()} == {
        "billing": [0, 1, 2, 3, 4],
        "crm": [0, 1, 2, 3, 4],
    }


async def test_publish_retried_with_same_id_runs_the_handler_once(bus: EventBus) -> None:
    runs: list[str] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        runs.append(event.id)

    await bus.publish("t", {"a": 1}, id="evt-1")
    await bus.drain()
    await bus.publish("t", {"a": 1}, id="evt-1")  # the producer's retry, after handling
    await bus.publish("t", {"a": 1}, id="evt-2")
    await bus.publish("t", {"a": 1}, id="evt-2")  # ... and one in the same batch
    await bus.drain()
    assert runs == ["evt-1", "evt-2"]
    assert afterward.stats()["events.duplicate"] == 2


async def test_replay_skips_processed_ids_unless_reprocess(bus: EventBus) -> None:
    runs: list[int] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        runs.append(event.data)

    for n in range(3):
        await bus.publish("t", n, key="k")
    await bus.drain()
    await bus.replay("t", group="g", from_offset=0)
    await bus.drain()
    assert runs == [0, 1, 2]
    assert (await bus.lag())["g"]["t"] == 0
    await bus.replay("t", group="g", from_offset=1, reprocess=True)
    await bus.drain()
    assert runs == [0, 1, 2, 1, 2]


async def test_replay_since_a_time(bus: EventBus) -> None:
    runs: list[int] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        runs.append(event.data)

    first = await bus.publish("t", 0, key="k")
    middle = await bus.publish("t", 1, key="k")
    await bus.publish("t", 2, key="k")
    await bus.drain()
    assert first.occurred_at <= middle.occurred_at
    await bus.replay("t", group="g", since=middle.occurred_at, reprocess=True)
    assert (await bus.lag())["g"]["t"] == 2
    await bus.drain()
    assert runs == [0, 1, 2, 1, 2]
    late = datetime(2999, 1, 1, tzinfo=UTC)
    await bus.replay("t", group="g", since=late)
    assert (await bus.lag())["g"]["t"] == 0


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_replay_since_does_not_assume_timestamps_ascend(url: str, tmp_path: Path) -> None:
    # Publishers on several threads (or a clock stepping back) append timestamps out of
    # order: ``since`` still picks the first offset at or after the time.
    from tests.events.backends import record

    bus = EventBus(f"sqlite:///{tmp_path / 'bus.db'}" if url == "sqlite" else url)
    await bus.connect()
    await bus._core.backend.log.append(
        [record("t", {}, id=f"e{ts}", at=float(ts)) for ts in (10, 30, 20, 40)]
    )
    since = datetime.fromtimestamp(25, UTC)
    assert await bus._core.backend.log.offsets_for_time("t", since) == {0: 1}
    await bus.aclose()


async def test_replay_validates_its_arguments(bus: EventBus) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        await bus.replay("t", group="g")
    with pytest.raises(ConfigError, match="exactly one"):
        await bus.replay("t", group="g", from_offset=0, since=datetime.now(UTC))
    with pytest.raises(ConfigError, match="aware"):
        await bus.replay("t", group="g", since=datetime(2020, 1, 1))
    with pytest.raises(ConfigError, match="from_offset"):
        await bus.replay("t", group="g", from_offset=-1)
    with pytest.raises(PublishError, match="topic"):
        await bus.replay("bad topic", group="g", from_offset=0)


async def test_per_key_order_with_concurrency(bus: EventBus) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    running = 0
    most = 0

    @bus.subscribe("t", group="g", concurrency=4)
    async def handle(event: Event) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(random.random() / 500)
        seen[event.key or ""].append(event.data)
        running -= 1

    rng = random.Random(7)
    expected: dict[str, list[int]] = defaultdict(list)
    for n in range(200):
        key = f"k{rng.randrange(8)}"
        expected[key].append(n)
        await bus.publish("t", n, key=key)
    await bus.drain()
    assert seen == expected
    assert most > 1  # different keys did run concurrently


async def test_stale_versions_are_skipped_and_counted(bus: EventBus) -> None:
    seen: list[tuple[str, int]] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        assert event.version is not None
        seen.append((event.data, event.version))

    await bus.publish("t", "a", key="k", version=1)
    await bus.publish("t", "b", key="k", version=3)
    await bus.publish("t", "c", key="k", version=2)  # stale within the batch
    await bus.publish("t", "x", key="other", version=1)
    await bus.drain()
    await bus.publish("t", "d", key="k", version=3)  # stale against the store
    await bus.publish("t", "e", key="k", version=4)
    await bus.drain()
    assert seen == [("a", 1), ("b", 3), ("x", 1), ("e", 4)]
    assert afterward.stats()["events.stale"] == 2


async def test_retries_then_dead_letter_and_the_group_moves_on(bus: EventBus) -> None:
    attempts: list[int] = []
    handled: list[tuple[int, str | None]] = []
    fail = True

    @bus.subscribe("t", group="g", retries=2, backoff=(0.001, 0.002))
    async def handle(event: Event) -> None:
        if event.data == 1 and fail:
            attempts.append(event.attempt)
            raise RuntimeError("payment service down")
        handled.append((event.data, afterward.correlation_id()))

    with afterward.correlate("cid-42"):
        bad = await bus.publish("t", 1)
    await bus.publish("t", 2)
    await bus.drain()
    assert attempts == [1, 2, 3]
    assert [n for n, _ in handled] == [2]
    assert (await bus.lag())["g"]["t"] == 0

    [letter] = await bus.dead_letters_async()
    assert await bus.dead_letters_async(group="other") == []
    assert letter.group == "g"
    assert letter.attempts == 3
    assert letter.error == "RuntimeError: payment service down"
    assert "payment service down" in letter.traceback and "Traceback" in letter.traceback
    assert letter.event.id == bad.id
    assert letter.event.correlation_id == "cid-42"
    assert letter.failed_at.tzinfo is not None

    assert await bus.retry_dead_letter(letter.id) is False  # still failing: it stays
    [again] = await bus.dead_letters_async("g")
    assert (again.id, again.attempts) == (letter.id, 4)

    fail = False
    assert await bus.retry_dead_letter(letter.id) is True
    assert handled[-1] == (1, "cid-42")
    assert await bus.dead_letters_async() == []
    # Processed now: a replay does not run it again.
    await bus.replay("t", group="g", from_offset=0)
    await bus.drain()
    assert [n for n, _ in handled] == [2, 1]


async def test_retry_dead_letter_after_the_id_was_processed_does_not_run_again(
    bus: EventBus,
) -> None:
    runs: list[int] = []

    @bus.subscribe("t", group="g", retries=0)
    async def handle(event: Event) -> None:
        runs.append(event.attempt)
        if len(runs) == 1:
            raise RuntimeError("down")

    await bus.publish("t", 1, id="x")
    await bus.drain()
    [letter] = await bus.dead_letters_async()
    await bus.publish("t", 1, id="x")  # the producer retried: this run succeeds
    await bus.drain()
    assert len(runs) == 2
    assert await bus.retry_dead_letter(letter.id) is True
    assert len(runs) == 2  # at most one successful run per ID and group
    assert await bus.dead_letters_async() == []


async def test_retry_dead_letter_without_the_handler_hands_it_back(bus_url: str) -> None:
    fail = True
    runs: list[str] = []
    async with EventBus(bus_url) as consumer:

        @consumer.subscribe("t", group="g", retries=0)
        async def handle(event: Event) -> None:
            runs.append(f"g:{event.id}")
            if fail:
                raise RuntimeError("down")

        @consumer.subscribe("t", group="other")
        async def other(event: Event) -> None:
            runs.append(f"other:{event.id}")

        await consumer.publish("t", 1, id="x")
        await consumer.drain()
        assert sorted(runs) == ["g:x", "other:x"]
        async with EventBus(bus_url) as cli:  # like `afterward dlq retry`: no handlers
            [letter] = await cli.dead_letters_async()
            assert await cli.retry_dead_letter(letter.id) is True
            assert await cli.dead_letters_async() == []
        fail = False
        await consumer.drain()
        assert sorted(runs) == ["g:x", "g:x", "other:x"]  # "other" skipped it


async def test_discard_dead_letter(bus: EventBus) -> None:
    @bus.subscribe("t", group="g", retries=0)
    async def handle(event: Event) -> None:
        raise ValueError("nope")

    await bus.publish("t", 1)
    await bus.drain()
    [letter] = await bus.dead_letters_async()
    await bus.discard_dead_letter(letter.id)
    assert await bus.dead_letters_async() == []
    with pytest.raises(afterward.NotFoundError):
        await bus.discard_dead_letter(letter.id)
    with pytest.raises(afterward.NotFoundError):
        await bus.retry_dead_letter("missing")


async def test_schema_enforced_at_publish_nothing_written(bus: EventBus) -> None:
    bus.schema(
        "order.completed",
        {
            "type": "object",
            "properties": {"order_id": {"type": "integer"}, "total": {"type": "number"}},
            "required": ["order_id"],
        },
    )
    await bus.publish("order.completed", {"order_id": 7, "total": 10})
    with pytest.raises(SchemaError, match="order_id") as info:
        await bus.publish("order.completed", {"order_id": "seven"})
    assert info.value.topic == "order.completed"
    with pytest.raises(SchemaError):
        await bus.publish_many("order.completed", [{"data": {"order_id": 1}}, {"data": {}}])
    assert await bus.event_count("order.completed") == 1


async def test_schema_compatibility_on_re_register(bus: EventBus) -> None:
    base = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    bus.schema("t", base)
    bus.schema("t", {**base, "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}})
    with pytest.raises(SchemaError, match="'b' is newly required"):
        bus.schema("t", {**base, "required": ["a", "b"]})
    with pytest.raises(SchemaError, match="'a' changed type"):
        bus.schema("t", {**base, "properties": {"a": {"type": "string"}}})
    bus.schema("t", {**base, "properties": {"a": {"type": "string"}}}, force=True)
    await bus.publish("t", {"a": "now a string"})
    with pytest.raises(ConfigError, match="JSON Schema"):
        bus.schema("t2", {"type": "not-a-type"})


async def test_pydantic_model_schema(bus: EventBus) -> None:
    class Order(pydantic.BaseModel):
        order_id: int

    class OrderV2(pydantic.BaseModel):
        order_id: int
        total: float

    bus.schema("t", Order)
    await bus.publish("t", {"order_id": 1})
    with pytest.raises(SchemaError, match="Order"):
        await bus.publish("t", {"order_id": "x"})
    with pytest.raises(SchemaError, match="'total' is newly required"):
        bus.schema("t", OrderV2)


@pytest.mark.parametrize(
    ("topic", "data", "message"),
    [
        ("t", {1, 2}, "not JSON-serializable"),
        ("t", float("nan"), "not JSON-serializable"),
        ("t", object(), "not JSON-serializable"),
        ("t", {"name": "\ud800"}, "not JSON-serializable"),  # no UTF-8 for a lone surrogate
        ("", 1, "invalid topic name"),
        ("has space", 1, "invalid topic name"),
        ("x" * 250, 1, "invalid topic name"),
        ("t/../x", 1, "invalid topic name"),
        ("t", "x" * (1024 * 1024), "over the 1048576-byte cap"),
    ],
)
async def test_bad_input_raises_publish_error_and_writes_nothing(
    bus: EventBus, topic: str, data: object, message: str
) -> None:
    with pytest.raises(PublishError, match=message):
        await bus.publish(topic, data)
    assert await bus.event_count("t") == 0


async def test_bad_arguments_name_what_was_wrong(bus: EventBus) -> None:
    with pytest.raises(PublishError, match="key"):
        await bus.publish("t", 1, key=5)  # type: ignore[arg-type]
    with pytest.raises(PublishError, match="version"):
        await bus.publish("t", 1, version="2")  # type: ignore[arg-type]
    with pytest.raises(PublishError, match="id"):
        await bus.publish("t", 1, id="")
    with pytest.raises(PublishError, match="headers"):
        await bus.publish("t", 1, headers={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(PublishError, match="data"):
        await bus.publish_many("t", [{"key": "k"}])
    with pytest.raises(PublishError, match="iterable of mappings"):
        await bus.publish_many("t", 5)  # type: ignore[arg-type]
    with pytest.raises(PublishError, match="topic"):
        await bus.publish_many("bad topic", [])
    with pytest.raises(ConfigError, match="retries"):
        bus.subscribe("t", group="g", retries=-1)
    with pytest.raises(ConfigError, match="concurrency"):
        bus.subscribe("t", group="g", concurrency=0)
    with pytest.raises(ConfigError, match="group"):
        bus.subscribe("t", group="")
    with pytest.raises(ConfigError, match="no handlers"):
        await bus.drain(groups=["nobody"])
    with pytest.raises(ConfigError, match="at least one topic"):
        await anext(bus.tail())  # used to poll nothing forever
    with pytest.raises(ConfigError, match="dead letter ID"):
        await bus.retry_dead_letter(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="group"):
        await bus.dead_letters_async(group=5)  # type: ignore[arg-type]
    for options in ({"batch_size": 0}, {"poll_interval": 0}, {"claim_ttl": -1}):
        with pytest.raises(ConfigError):
            EventBus("memory://", **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="scheme"):
        EventBus("nosuch://x")
    assert await bus.event_count("t") == 0


async def test_publish_many_is_all_or_nothing(bus: EventBus) -> None:
    with pytest.raises(PublishError):
        await bus.publish_many("t", [{"data": 1}, {"data": {1}}])
    assert await bus.event_count("t") == 0
    events = await bus.publish_many("t", [{"data": n, "key": "k"} for n in range(3)])
    assert [e.data for e in events] == [0, 1, 2]
    assert await bus.event_count("t") == 3


async def test_envelope_and_handler_scope(bus: EventBus) -> None:
    seen: list[Event] = []
    deferred: list[str | None] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        assert afterward.correlation_id() == event.correlation_id
        defer(lambda: deferred.append(afterward.correlation_id()))
        assert len(deferred) == len(seen)  # deferred work runs after the handler returns
        seen.append(event)

    with afterward.correlate("req-1"):
        sent = await bus.publish(
            "t", {"n": 1}, key="k", version=2, id="my-id", headers={"source": "test"}
        )
    await bus.publish("t", None)
    await bus.drain()
    first, second = seen
    assert (first.id, first.topic, first.key, first.version) == ("my-id", "t", "k", 2)
    assert (first.data, first.headers, first.attempt) == ({"n": 1}, {"source": "test"}, 1)
    assert first.correlation_id == "req-1" == sent.correlation_id
    assert first.occurred_at == sent.occurred_at and first.occurred_at.tzinfo is not None
    assert second.correlation_id and second.correlation_id != "req-1"
    assert len(second.id) == 36
    assert deferred == ["req-1", second.correlation_id]


async def test_lag_per_group_and_topic(bus: EventBus) -> None:
    @bus.subscribe("a", group="g1")
    async def g1(event: Event) -> None: ...

    @bus.subscribe("b", group="g1")
    async def g1b(event: Event) -> None: ...

    @bus.subscribe("a", group="g2", start="latest")
    async def g2(event: Event) -> None: ...

    await bus.publish("a", 1)  # before g2 ever looked: it starts after this one
    assert await bus.lag() == {"g1": {"a": 1, "b": 0}, "g2": {"a": 0}}
    await bus.publish("a", 2)
    await bus.publish("b", 3)
    assert await bus.lag() == {"g1": {"a": 2, "b": 1}, "g2": {"a": 1}}
    await bus.drain(groups=["g1"])
    assert await bus.lag() == {"g1": {"a": 0, "b": 0}, "g2": {"a": 1}}


async def test_new_group_starts_earliest_or_latest(bus: EventBus) -> None:
    for n in range(3):
        await bus.publish("t", n, key="k")
    early: list[int] = []
    late: list[int] = []

    @bus.subscribe("t", group="early")
    async def e(event: Event) -> None:
        early.append(event.data)

    @bus.subscribe("t", group="late", start="latest")
    async def lt(event: Event) -> None:
        late.append(event.data)

    await bus.drain()
    await bus.publish("t", 3, key="k")
    await bus.drain()
    assert early == [0, 1, 2, 3]
    assert late == [3]


async def test_on_lag_fires_on_crossing_only(bus: EventBus) -> None:
    fired: list[tuple[str, str, int]] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None: ...

    async def alert(group: str, topic: str, lag: int) -> None:
        fired.append((group, topic, lag))

    bus.on_lag(threshold=3, callback=alert)
    for n in range(3):
        await bus.publish("t", n)
    await bus.lag()  # first reading at the threshold fires
    await bus.publish("t", 3)
    await bus.lag()  # still above: no second alert
    assert fired == [("g", "t", 3)]
    await bus.drain()  # drops below
    await bus.lag()
    for n in range(2):
        await bus.publish("t", n)
    await bus.lag()  # below: nothing
    await bus.publish("t", 9)
    await bus.lag()  # crosses again
    assert fired == [("g", "t", 3), ("g", "t", 3)]


async def test_on_lag_checked_while_consuming_and_failures_isolated(bus_url: str) -> None:
    fired: list[int] = []
    async with EventBus(bus_url, batch_size=2) as bus:

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None: ...

        def alert(group: str, topic: str, lag: int) -> None:
            fired.append(lag)

        def broken(group: str, topic: str, lag: int) -> None:
            raise RuntimeError("alerting is down")

        bus.on_lag(threshold=2, callback=broken)
        bus.on_lag(threshold=2, callback=alert)
        for n in range(6):
            await bus.publish("t", n)
        await bus.drain()  # lag after batches: 4, 2, 0 -> first reading fires
        assert fired == [4]
        assert afterward.stats()["hooks.failed"] == 1
    with pytest.raises(ConfigError):
        bus.on_lag(threshold=0, callback=alert)


async def test_consumer_streams_a_backlog_in_batches(bus_url: str) -> None:
    async with EventBus(bus_url, batch_size=7) as bus:
        seen: list[int] = []

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data)

        await bus.publish_many("t", [{"data": n, "key": "k"} for n in range(100)])
        await bus.drain()
        assert seen == list(range(100))


async def test_run_consumes_until_cancelled(bus: EventBus) -> None:
    got = asyncio.Event()

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        got.set()

    task = asyncio.create_task(bus.run())
    await bus.publish("t", 1)
    await asyncio.wait_for(got.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_while_run_is_starting_stops_it(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SIGTERM landing while run() connects or relays the outbox must not be lost.
    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None: ...

    relay = consumers.relay_outboxes

    async def relay_then_signal(core: Any, database: object = None) -> int:
        bus.stop()
        return await relay(core, database)

    monkeypatch.setattr(consumers, "relay_outboxes", relay_then_signal)
    await asyncio.wait_for(bus.run(), 5)


async def test_drain_waits_for_a_claim_held_elsewhere_without_spinning(
    claiming_bus_url: str,
) -> None:
    async with EventBus(claiming_bus_url, claim_ttl=0.3) as bus:

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None: ...

        await bus.publish("t", 1)
        await bus._core.backend.state.claim("g", "t", "another-process", 30)  # its consumer is busy
        claims = 0
        claim = bus._core.backend.state.claim

        async def counted(group: str, topic: str, owner: str, ttl: float) -> bool:
            nonlocal claims
            claims += 1
            return await claim(group, topic, owner, ttl)

        bus._core.backend.state.claim = counted  # type: ignore[method-assign]
        if hasattr(
            bus._core.backend.log, "_claim"
        ):  # Redis members claim through it (fresh or renewed)
            raw_claim = bus._core.backend.log._claim

            async def counted_raw(group: str, topic: str, owner: str, ttl: float) -> int:
                nonlocal claims
                claims += 1
                result: int = await raw_claim(group, topic, owner, ttl)
                return result

            bus._core.backend.log._claim = counted_raw
        draining = asyncio.create_task(bus.drain())
        await asyncio.sleep(0.5)  # a window to count claim attempts in, not a sync point
        assert 0 < claims < 20  # standby pace (0.1 s), not thousands of write transactions
        await bus._core.backend.state.release("g", "t", "another-process")
        await asyncio.wait_for(draining, 5)
        assert (await bus.lag())["g"]["t"] == 0


async def test_drain_while_run_consumes_handles_each_event_once(bus: EventBus) -> None:
    runs: list[int] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        await asyncio.sleep(0)  # let the other loop in, if it could get in
        runs.append(event.data)

    running = asyncio.create_task(bus.run())  # e.g. started by the app's lifespan
    for n in range(5):
        await bus.publish("t", n, key="k")
    await bus.drain()  # the test's own drain, same bus and process
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert runs == [0, 1, 2, 3, 4]


async def test_a_second_bus_on_the_same_url_shares_the_store(bus_url: str) -> None:
    async with EventBus(bus_url) as one, EventBus(bus_url) as two:
        seen: list[int] = []

        @two.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data)

        await one.publish("t", 1)
        await two.drain()
        assert seen == [1]


async def test_memory_buses_are_private() -> None:
    one, two = EventBus("memory://"), EventBus("memory://")
    await one.publish("t", 1)
    assert await one.event_count("t") == 1
    assert await two.event_count("t") == 0


def test_sync_twins(bus_url: str) -> None:
    bus = EventBus(bus_url)
    seen: list[int] = []

    @bus.subscribe("t", group="g", retries=0)
    def handle(event: Event) -> None:
        if event.data == 2:
            raise RuntimeError("boom")
        seen.append(event.data)

    bus.publish_sync("t", 1)
    bus.publish_sync("t", 2)
    bus.drain_sync()
    assert seen == [1]
    [letter] = bus.dead_letters()
    assert bus.lag_sync() == {"g": {"t": 0}}
    bus.discard_dead_letter_sync(letter.id)
    assert bus.dead_letters() == []


async def test_a_position_past_the_end_is_reset_not_skipped(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    # A store that outlived its topic (recreated, or a broker that lost its data): the
    # group's position is past the partition's end.
    seen: list[int] = []

    @bus.subscribe("t", group="g")
    async def handle(event: Event) -> None:
        seen.append(event.data)

    for n in range(8):
        await bus.publish("t", n, key="k")
    ends = await bus._core.backend.log.end_offsets("t")
    await bus._core.backend.state.register("g", "t", {})
    await bus._core.backend.state.rewind(
        "g", "t", {p: e + 100 for p, e in ends.items()}, forget=False
    )
    assert (await bus.lag())["g"]["t"] == 8  # never 0: those events are not handled yet
    with caplog.at_level("ERROR", logger="afterward.events"):
        await bus.drain()
    assert sorted(seen) == list(range(8))
    assert "past the partition's end" in caplog.text and "'g'" in caplog.text
    assert (await bus.lag())["g"]["t"] == 0


async def test_a_batch_handler_gets_lists_exactly_once_in_key_order(bus: EventBus) -> None:
    calls: list[list[Event]] = []

    @bus.subscribe("t", group="g", batch=True)
    async def handle(events: list[Event]) -> None:
        calls.append(events)

    for n in range(20):
        await bus.publish("t", n, key=f"k{n % 4}", id=f"e{n}")
    await bus.publish("t", 0, key="k0", id="e0")  # a producer's retry: skipped
    await bus.drain()
    seen = [e for call in calls for e in call]
    assert sorted(e.id for e in seen) == sorted(f"e{n}" for n in range(20))
    for key in ("k0", "k1", "k2", "k3"):
        assert [e.data for e in seen if e.key == key] == sorted(
            e.data for e in seen if e.key == key
        )
    assert (await bus.lag())["g"]["t"] == 0


async def test_a_batch_handler_dead_letters_only_the_events_that_fail_alone(
    bus: EventBus,
) -> None:
    handled: list[int] = []

    @bus.subscribe("t", group="g", batch=True, retries=1, backoff=0)
    def handle(events: list[Event]) -> None:  # a sync batch handler runs on a thread
        if any(e.data == 3 for e in events):
            raise ValueError("3 is poison")
        handled.extend(e.data for e in events)

    for n in range(6):
        await bus.publish("t", n, key="k")
    await bus.drain()
    assert sorted(handled) == [0, 1, 2, 4, 5]  # each once: the batch calls raised
    (letter,) = await bus.dead_letters_async("g")
    assert letter.event.data == 3 and letter.error == "ValueError: 3 is poison"
    assert letter.attempts == 2  # alone: the first run and its one retry
    with pytest.raises(ConfigError, match="batch"):
        bus.subscribe("t", group="h", batch="yes")  # type: ignore[arg-type]
