"""A ``kafka://`` URL, parsed once, and the aiokafka client options derived from it.

Every producer, consumer and admin client of the backend gets its options from
:meth:`KafkaSettings.client_options`, so the bootstrap servers, client ID and request
timeout are written in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from afterward._exceptions import ConfigError

__all__ = ["KafkaSettings"]

#: Why ``store=`` has no default: a SQLite file in the working directory would give a
#: group one store per directory (exactly-once lost without a word) and outlive its
#: broker (positions of another cluster).
_NO_STORE = (
    "a Kafka bus keeps its positions, processed IDs and dead letters in a state store: "
    "give it as store=<URL-encoded URL>, redis://... when consumers run on several "
    "machines, sqlite:///<path> on one (every consumer of a group must use the same "
    "store). There is no default: a file in the working directory would split a group "
    "between directories"
)

#: The URL options that are whole numbers (the others are strings).
_NUMBERS = (
    "partitions",
    "queue_partitions",
    "request_timeout_ms",
    "session_timeout_ms",
    "rebalance_timeout_ms",
)
_STRINGS = ("prefix", "client_id")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """What a ``kafka://`` bus URL says (see :mod:`afterward.events.backends.kafka`).

    Attributes:
        url: the URL as given.
        bootstrap: ``host:port[,host:port]``, aiokafka's ``bootstrap_servers``.
        store: the state store's URL (``store=``, decoded).
        prefix: prepended to every Kafka topic and group name.
        partitions: the partition count of the topics the bus creates.
        queue_partitions: the partition count of the work queue topics it creates: at
            most that many workers of one queue share it (the others stand by).
        request_timeout_ms: how long a request waits for an unreachable broker.
        session_timeout_ms: how long a silent group member keeps its partitions.
        rebalance_timeout_ms: how long a rebalance waits for the members to rejoin.
        client_id: the client ID the broker sees.
    """

    url: str
    bootstrap: str
    store: str
    prefix: str = ""
    partitions: int = 4
    queue_partitions: int = 16
    request_timeout_ms: int = 40_000
    session_timeout_ms: int = 10_000
    rebalance_timeout_ms: int = 60_000
    client_id: str = "afterward"

    @classmethod
    def parse(cls, url: str) -> KafkaSettings:
        """Parse and check a ``kafka://`` URL.

        Raises:
            ConfigError: no host, no ``store=``, an option that is not a positive whole
                number where one is needed, an unknown option, or a state store on Kafka
                itself.
        """
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(
                f"a Kafka bus URL looks like kafka://host:9092?store=..., got {url!r}"
            )
        options = dict(parse_qsl(parts.query))
        store = options.pop("store", "")
        if store.split("://", 1)[0].lower() == "kafka":
            raise ConfigError("the state store of a Kafka bus cannot be Kafka itself")
        given: dict[str, Any] = {name: options.pop(name) for name in _STRINGS if name in options}
        for name in _NUMBERS:
            if name in options:
                text = options.pop(name)
                try:
                    given[name] = int(text)
                except ValueError as exc:
                    raise ConfigError(
                        f"bad number in Kafka bus URL {url!r}: {name}={text}"
                    ) from exc
                if given[name] < 1:
                    raise ConfigError(f"{name} must be at least 1 in Kafka bus URL {url!r}")
        if options:
            raise ConfigError(f"unknown Kafka bus URL options {sorted(options)} in {url!r}")
        if not store:
            raise ConfigError(f"{_NO_STORE}; got {url!r}")
        return cls(url, parts.netloc, store, **given)

    @property
    def describe(self) -> str:
        """How error messages name the bus."""
        return f"Kafka bus {self.bootstrap}"

    def topic(self, topic: str) -> str:
        """The Kafka topic of an afterward topic."""
        return self.prefix + topic

    def client_options(self, **options: Any) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client: the connection's, then ``options``
        (which may override them)."""
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            **options,
        }

    @property
    def join_request_ms(self) -> int:
        """The request timeout of a group member: a JoinGroup request lasts up to the
        rebalance timeout, so give it that and more."""
        return max(self.request_timeout_ms, self.rebalance_timeout_ms + 5000)

    def member_options(self, group: str) -> dict[str, Any]:
        """Keyword arguments for the consumer of a member of ``group``.

        Offsets are not auto-committed (the state store's positions are the group's) and
        the poll interval is never shorter than the rebalance timeout, so a slow batch
        does not cost the member its partitions.
        """
        return self.client_options(
            request_timeout_ms=self.join_request_ms,
            group_id=self.prefix + group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.session_timeout_ms // 3),
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            max_poll_interval_ms=max(self.rebalance_timeout_ms, 300_000),
        )
