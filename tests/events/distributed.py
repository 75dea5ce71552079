"""Bus URLs on the distributed backends for the conformance suite: Kafka (tansu) and Redis.

Each URL is private to one test: Kafka topics and the Redis keys get a random prefix,
Kafka's state store is a SQLite file in the test's ``tmp_path``. The Redis keys under
every prefix handed out are deleted when the test session ends (never FLUSHDB: the
server is shared).
"""

from __future__ import annotations

import atexit
import uuid
from pathlib import Path
from urllib.parse import quote

from tests.events.kafka_broker import shared_broker
from tests.support import require_service

__all__ = ["delete_redis_keys", "kafka_bus_url", "redis_bus_url"]

REDIS = "redis://127.0.0.1:6379/0"

_prefixes: list[str] = []


def delete_redis_keys(prefixes: list[str], url: str = REDIS) -> None:
    """Delete every key under ``prefixes`` on the Redis at ``url``."""
    if not prefixes:
        return
    from redis import Redis

    client = Redis.from_url(url)
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
    finally:
        client.close()


def _cleanup() -> None:
    try:
        delete_redis_keys(_prefixes)
    except Exception as exc:  # the server may be gone at exit; say so, never hide it
        print(f"could not delete Redis test keys {_prefixes}: {exc!r}")


atexit.register(_cleanup)


def redis_bus_url(tmp_path: Path) -> str:
    """``redis://127.0.0.1:6379/0?prefix=<fresh>`` (the key prefix is this test's own)."""
    require_service("redis", 6379)
    prefix = f"afterward-test-{uuid.uuid4().hex[:10]}:"
    _prefixes.append(prefix)
    return f"{REDIS}?prefix={prefix}"


def kafka_bus_url(tmp_path: Path, partitions: int = 1) -> str:
    """``kafka://`` on the session's tansu, with a fresh topic prefix and state store."""
    store = f"sqlite:///{tmp_path / 'kafka-state.db'}"
    prefix = f"t{uuid.uuid4().hex[:10]}."
    # One partition: some conformance tests compare the order of events across keys,
    # which Kafka keeps only within a partition (tests/events/test_kafka.py covers several).
    store = quote(store, safe="")
    return f"{shared_broker().url}&partitions={partitions}&prefix={prefix}&store={store}"
