"""Positions never skip silently, on real brokers (API.md section 5): a state store is
bound to the Kafka cluster it served and refuses another one; a broker that lost its
data (same cluster, shorter partitions) has the group's positions reset, with an error
logged, and the lag counts those events meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from afterward import BackendError
from afterward.events import Event, EventBus
from tests.events.kafka_broker import TansuBroker, running_tansu

pytestmark = pytest.mark.kafka


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[TansuBroker, TansuBroker]]:
    """Two tansu brokers of this test's own: two clusters, two cluster IDs."""
    with running_tansu(tmp_path / "a.log") as a, running_tansu(tmp_path / "b.log") as b:
        yield a, b


def _url(broker: TansuBroker, store: Path, prefix: str) -> str:
    state = quote(f"sqlite:///{store}", safe="")
    return f"{broker.url}&partitions=1&prefix={prefix}&store={state}"


async def test_a_state_store_refuses_another_cluster(
    tmp_path: Path, brokers: tuple[TansuBroker, TansuBroker]
) -> None:
    first, second = brokers
    store = tmp_path / "state.db"
    prefix = f"p{uuid.uuid4().hex[:8]}."
    seen: list[object] = []

    def subscribe(bus: EventBus) -> None:
        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data)

    async with EventBus(_url(first, store, prefix)) as bus:
        subscribe(bus)
        for n in range(3):
            await bus.publish("t", n)
        await bus.drain()
    assert seen == [0, 1, 2]
    other = EventBus(_url(second, store, prefix))
    subscribe(other)
    try:
        for n in range(8):
            await other.publish("t", n)  # publishing needs no positions
        with pytest.raises(BackendError, match="belongs to cluster") as info:
            await other.drain()
        assert first.bootstrap.split(":")[1] in str(info.value)  # tansu's ID names its port
    finally:
        await other.aclose()
    assert seen == [0, 1, 2]  # none of the other cluster's events skipped or handled
    async with EventBus(_url(first, store, prefix)) as bus:  # its own cluster: fine
        assert await bus.lag() == {"g": {"t": 0}}


async def test_a_broker_that_lost_its_data_resets_the_positions_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "state.db"
    prefix = f"p{uuid.uuid4().hex[:8]}."
    seen: list[object] = []
    with running_tansu(tmp_path / "broker.log") as broker:
        url = _url(broker, store, prefix)
        async with EventBus(url) as bus:

            @bus.subscribe("t", group="g")
            async def handle(event: Event) -> None:
                seen.append(event.data)

            for n in range(8):
                await bus.publish("t", n)
            await bus.drain()
        broker.restart()  # same address and cluster ID, memory storage: the data is gone
        async with EventBus(url) as bus:

            @bus.subscribe("t", group="g")
            async def again(event: Event) -> None:
                seen.append(("new", event.data))

            for n in range(3):
                await bus.publish("t", n)
            assert await bus.lag() == {"g": {"t": 3}}  # the stored 8 is past the end 3
            with caplog.at_level("ERROR", logger="afterward.events"):
                await bus.drain()
            assert await bus.lag() == {"g": {"t": 0}}
    assert seen == [*range(8), ("new", 0), ("new", 1), ("new", 2)]
    assert "stored position 8 is past the partition's end 3" in caplog.text
    assert "'g'" in caplog.text and "'t'" in caplog.text
