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
from tests.events._faults import kill_9_mid_batch, make_effects_db, poison_goes_to_dead_letters
from tests.events.distributed import kafka_bus_url
from tests.events.kafka_broker import TansuBroker, running_tansu

pytestmark = pytest.mark.kafka


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    with running_tansu() as own:
        yield own


async def test_broker_restart_while_publishing_and_consuming(
    broker: TansuBroker, tmp_path: Path
) -> None:
    store = quote(f"sqlite:///{tmp_path / 'state.db'}", safe="")
    url = f"kafka://{broker.bootstrap}?request_timeout_ms=2000&partitions=1&store={store}"
    seen: list[int] = []
    async with EventBus(url) as bus:

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data)

        await bus.publish("t", 1, key="k")
        await bus.drain()
        broker.stop()
        with pytest.raises(BackendUnavailable) as info:
            await bus.publish("t", 2, key="k")
        assert info.value.backend == "kafka"
        broker.start()
        await bus.publish("t", 3, key="k")
        await bus.drain()
    assert seen == [1, 3]


async def test_consumer_killed_mid_batch(tmp_path: Path) -> None:
    await kill_9_mid_batch(kafka_bus_url(tmp_path), make_effects_db(tmp_path / "effects.db"))


async def test_poison_message_goes_to_the_dead_letters(tmp_path: Path) -> None:
    await poison_goes_to_dead_letters(kafka_bus_url(tmp_path))
