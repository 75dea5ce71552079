"""The Kafka backend under faults: the broker stopped and restarted, a consumer killed
mid-batch, a poison message.

tansu keeps its log in memory, so a restarted broker has forgotten every event and
offset; the restart test checks what Apache Kafka's replicated log would not need
(publishing fails clearly while the broker is down, and the bus recovers after), and
the kill test runs on the session's broker, which is never restarted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from afterward import BackendUnavailable
from afterward.events import Event, EventBus
from tests.events._faults import (
    effects,
    effects_by,
    kill_9_mid_batch,
    make_effects_db,
    poison_goes_to_dead_letters,
)
from tests.events.distributed import kafka_bus_url
from tests.events.kafka_broker import TEST_QUERY, TansuBroker, running_tansu
from tests.events.procs import spawn
from tests.support import wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    with running_tansu() as own:
        yield own


async def test_broker_restart_while_publishing_and_consuming(
    broker: TansuBroker, tmp_path: Path
) -> None:
    store = quote(f"sqlite:///{tmp_path / 'state.db'}", safe="")
    url = f"kafka://{broker.bootstrap}?{TEST_QUERY}&partitions=1&store={store}"
    seen: list[int] = []
    async with EventBus(url) as bus:

        @bus.subscribe("t", group="g")
        @bus.subscribe("after", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data)

        await bus.publish("t", 1, key="k")
        await bus.drain()
        broker.stop()
        with pytest.raises(BackendUnavailable) as info:
            await bus.publish("t", 2, key="k")
        assert info.value.backend == "kafka"
        broker.start()
        # The restarted tansu has forgotten every topic (memory storage; Apache Kafka
        # would not): publish to a topic the group's stored positions know nothing of.
        await bus.publish("after", 3, key="k")
        await bus.drain()
    assert seen == [1, 3]


async def test_consumer_killed_mid_batch(tmp_path: Path) -> None:
    await kill_9_mid_batch(kafka_bus_url(tmp_path), make_effects_db(tmp_path / "effects.db"))


async def test_poison_message_goes_to_the_dead_letters(tmp_path: Path) -> None:
    await poison_goes_to_dead_letters(kafka_bus_url(tmp_path))


async def test_two_consumer_processes_share_partitions_and_survive_a_kill_9(
    tmp_path: Path,
) -> None:
    """Kafka's group protocol shares the partitions between two consumer processes; one
    is killed (SIGKILL) mid-stream and the other takes its partitions over: every effect
    exactly once (inbox), per-key order kept, nothing left behind."""
    url = kafka_bus_url(tmp_path, partitions=4)
    effects_db = make_effects_db(tmp_path / "effects.db")
    keys = [f"k{k}" for k in range(8)]
    async with EventBus(url) as bus:
        for n in range(240):
            await bus.publish("t", {"n": n}, key=keys[n % 8], id=f"e{n}")
    first = spawn("consume", url, str(effects_db), None, True, False, 0.01)
    second = spawn("consume", url, str(effects_db), None, True, False, 0.01)
    try:
        # Both members have partitions (the group rebalanced to share them)...
        wait_for(lambda: {pid for _, pid in effects_by(effects_db)} >= {first.pid, second.pid}, 60)
        second.kill()  # ...then one dies mid-stream, holding an uncommitted batch
        assert second.wait(timeout=10) == -9
        wait_for(lambda: len(effects(effects_db)) >= 240, 90)
        async with EventBus(url) as bus:
            wait_for(lambda: bus.lag_sync()["g"]["t"] == 0, 30)
    finally:
        first.kill()
        second.kill()
        first.wait(timeout=10)
    ran = effects(effects_db)
    assert sorted(ran) == sorted(f"e{n}" for n in range(240))  # each exactly once
    for key in range(8):
        numbers = [int(i[1:]) for i in ran if int(i[1:]) % 8 == key]
        assert numbers == sorted(numbers)  # per-key order across the handover
    took_over = {pid for event_id, pid in effects_by(effects_db)[-20:]}
    assert took_over == {first.pid}
