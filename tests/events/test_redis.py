"""What only the Redis backend has: the key prefix and the stream layout. The shared
guarantees are in test_conformance.py, faults in test_faults_redis.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from afterward import ConfigError
from afterward.events import Event, EventBus
from tests.events.distributed import redis_bus_url

pytestmark = pytest.mark.redis


async def test_everything_lives_under_the_prefix_as_streams(tmp_path: Path) -> None:
    from redis.asyncio import Redis

    url = redis_bus_url(tmp_path)
    prefix = url.split("prefix=", 1)[1]
    async with EventBus(url) as bus:

        @bus.subscribe("orders", group="billing")
        async def handle(event: Event) -> None:
            return None

        await bus.publish("orders", {"n": 1}, key="k")
        await bus.drain()
    client = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = sorted(k.decode() for k in await client.keys(prefix + "*"))
        assert keys == [
            f"{prefix}{name}"
            for name in [
                "done:billing",
                "groups",
                "offset:orders",
                "pos:orders:billing",
                "stream:orders",
            ]
        ]
        assert await client.type(f"{prefix}stream:orders") == b"stream"
        [(entry_id, fields)] = await client.xrange(f"{prefix}stream:orders")
        assert entry_id == b"0-1" and set(fields) == {b"id", b"ts", b"payload"}
    finally:
        await client.aclose()


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        EventBus("redis://127.0.0.1:notaport/0")
