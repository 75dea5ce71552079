"""The ``kafka://`` URL, parsed and checked without a broker."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from afterward import ConfigError
from afterward.events._backend import Backend
from afterward.events.backends.kafka import KafkaSettings, open_backend

STORE = quote("sqlite:///var/lib/shop/kafka-state.db", safe="")


def test_defaults() -> None:
    settings = KafkaSettings.parse(f"kafka://127.0.0.1:9092?store={STORE}")
    assert settings.bootstrap == "127.0.0.1:9092"
    assert settings.store == "sqlite:///var/lib/shop/kafka-state.db"
    assert (settings.prefix, settings.partitions, settings.client_id) == ("", 4, "afterward")
    assert settings.queue_partitions == 16
    assert (
        settings.request_timeout_ms,
        settings.session_timeout_ms,
        settings.rebalance_timeout_ms,
    ) == (40_000, 10_000, 60_000)


def test_every_option() -> None:
    store = quote("sqlite:///tmp/state.db?x=1", safe="")
    settings = KafkaSettings.parse(
        f"kafka://a:1,b:2?store={store}&prefix=p.&partitions=8&queue_partitions=3"
        "&request_timeout_ms=5000"
        "&session_timeout_ms=1500&rebalance_timeout_ms=1000&client_id=me"
    )
    assert settings.bootstrap == "a:1,b:2"
    assert settings.store == "sqlite:///tmp/state.db?x=1"
    assert settings.topic("orders") == "p.orders"
    assert (settings.partitions, settings.queue_partitions) == (8, 3)
    assert settings.client_options() == {
        "bootstrap_servers": "a:1,b:2",
        "client_id": "me",
        "request_timeout_ms": 5000,
    }
    member = settings.member_options("billing")
    assert member["group_id"] == "p.billing"
    # A JoinGroup request may last the rebalance timeout: the request timeout covers it.
    assert member["request_timeout_ms"] == max(5000, 1000 + 5000)
    assert member["session_timeout_ms"] == 1500
    assert member["heartbeat_interval_ms"] == 500


def test_client_options_may_be_overridden() -> None:
    settings = KafkaSettings.parse(f"kafka://h:1?request_timeout_ms=7&store={STORE}")
    assert settings.client_options(request_timeout_ms=9, acks="all") == {
        "bootstrap_servers": "h:1",
        "client_id": "afterward",
        "request_timeout_ms": 9,
        "acks": "all",
    }


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://", "kafka://host:9092"),
        ("kafka://?partitions=4", "kafka://host:9092"),
        ("kafka://h:1?partitions=many", "partitions=many"),
        ("kafka://h:1?request_timeout_ms=1.5", "request_timeout_ms=1.5"),
        ("kafka://h:1?session_timeout_ms=soon", "session_timeout_ms=soon"),
        ("kafka://h:1?partitions=0", "partitions must be at least 1"),
        ("kafka://h:1?queue_partitions=0", "queue_partitions must be at least 1"),
        ("kafka://h:1?request_timeout_ms=-5", "request_timeout_ms must be at least 1"),
        ("kafka://h:1?unknown=1&other=2", "['other', 'unknown']"),
        ("kafka://h:1?store=kafka://h:2", "cannot be Kafka itself"),
        ("kafka://h:1?store=KAFKA://h:2", "cannot be Kafka itself"),
        # No default store: a file in the working directory would split a group.
        ("kafka://h:1", "store=<URL-encoded URL>"),
        ("kafka://h:1?partitions=2&store=", "There is no default"),
    ],
)
def test_bad_urls(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        KafkaSettings.parse(url)
    assert says in str(info.value)


def test_a_bad_url_opens_no_store() -> None:
    opened: list[str] = []

    def open_store(url: str) -> Backend:
        opened.append(url)
        raise AssertionError("a bad URL should be refused before its store is opened")

    with pytest.raises(ConfigError):
        open_backend("kafka://h:1?partitions=x", open_store)
    assert opened == []
