"""The Redis backend under faults: its server stopped and restarted, a consumer killed
mid-batch, a poison message. The restarts use a private redis-server (never the shared
one on 6379), with an fsync-always append-only file so acknowledged writes survive."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from afterward import BackendUnavailable
from afterward.events import Event, EventBus
from tests.events._faults import (
    effects_by,
    kill_9_mid_batch,
    make_effects_db,
    poison_goes_to_dead_letters,
)
from tests.events.distributed import redis_bus_url
from tests.events.procs import spawn
from tests.support import REQUIRE_SERVICES, port_open, wait_for

pytestmark = pytest.mark.redis


class PrivateRedis:
    """A redis-server of our own on a free port; ``stop``/``start`` keep port and data."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0?prefix=faults:&socket_timeout=2"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "SERVICE MISSING: redis-server is not on PATH"
            if REQUIRE_SERVICES:
                pytest.fail(message)
            pytest.skip(message)
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open("127.0.0.1", self.port), timeout=15)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(15)
            self._process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def test_server_restart_while_publishing_and_consuming(server: PrivateRedis) -> None:
    seen: list[int] = []
    async with EventBus(server.url) as bus:

        @bus.subscribe("t", group="g")
        async def handle(event: Event) -> None:
            seen.append(event.data)

        await bus.publish("t", 1, key="k")
        await bus.publish("t", 2, key="k")
        await bus.drain()
        await bus.publish("t", 3, key="k")  # acknowledged, not consumed yet
        server.stop()
        with pytest.raises(BackendUnavailable) as info:
            await bus.publish("t", 4, key="k")
        assert info.value.backend == "redis"
        with pytest.raises(BackendUnavailable):
            await bus.drain()
        server.start()
        await bus.publish("t", 5, key="k")
        await bus.drain()
    assert seen == [1, 2, 3, 5]  # nothing acknowledged lost, nothing twice


async def test_consumer_killed_mid_batch(tmp_path: Path) -> None:
    # The consumer processes use claim_ttl=1: the standby takes over a second after.
    await kill_9_mid_batch(redis_bus_url(tmp_path), make_effects_db(tmp_path / "effects.db"))


async def test_poison_message_goes_to_the_dead_letters(tmp_path: Path) -> None:
    await poison_goes_to_dead_letters(redis_bus_url(tmp_path))


async def test_the_standby_process_takes_over_in_order_after_the_holder_is_killed(
    tmp_path: Path,
) -> None:
    url = redis_bus_url(tmp_path)
    effects_db = make_effects_db(tmp_path / "effects.db")
    async with EventBus(url) as bus:
        await bus.publish_many(
            "t", [{"data": {"n": n}, "key": "k", "id": f"e{n}"} for n in range(50)]
        )
    # The holder kills itself after handling e30 (batches of 20: e20..e30 are pending,
    # unacknowledged); the other process waits for its claim, then takes the pending
    # entries over (the inbox makes e20..e30 no-ops) and goes on.
    holder = spawn("consume", url, str(effects_db), 30, True, False)
    wait_for(lambda: effects_by(effects_db), timeout=30)
    standby = spawn("consume", url, str(effects_db), None, True, True)
    assert holder.wait(timeout=60) == -9
    assert standby.wait(timeout=60) == 0
    rows = effects_by(effects_db)
    assert [event_id for event_id, _ in rows] == [f"e{n}" for n in range(50)]
    assert [pid for _, pid in rows] == [holder.pid] * 31 + [standby.pid] * 19
    async with EventBus(url) as bus:
        assert (await bus.lag())["g"]["t"] == 0
