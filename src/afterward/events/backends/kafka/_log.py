""":class:`KafkaLog`: the pieces of the Kafka backend tied into one event log."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from aiokafka import errors as kafka_errors

from afterward.events._protocols import ConnectContext, Member, StateStore
from afterward.events._records import AppendRecord, StoredDeadLetter, StoredEvent
from afterward.events.backends._driver import DriverErrors
from afterward.events.backends.kafka._admin import set_retention
from afterward.events.backends.kafka._clients import KafkaClients
from afterward.events.backends.kafka._member import join
from afterward.events.backends.kafka._producer import Producer
from afterward.events.backends.kafka._reader import LogReader
from afterward.events.backends.kafka._settings import KafkaSettings

__all__ = ["KafkaLog"]

#: aiokafka errors (and socket errors) that mean the broker cannot be reached.
_UNAVAILABLE = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.RequestTimedOutError,
    kafka_errors.NodeNotReadyError,
    OSError,
)
_BAD_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class KafkaLog(ConnectContext):
    """An event log on Kafka, with its state in another backend.

    See :mod:`afterward.events.backends.kafka` for what lives where. Implements
    :class:`~afterward.events._protocols.Log`,
    :class:`~afterward.events._protocols.GroupLog`,
    :class:`~afterward.events._protocols.ClusterLog`,
    :class:`~afterward.events._protocols.DeadLetterMirror` and
    :class:`~afterward.events._protocols.RetainedLog` (the topics' ``retention.ms``, see
    :mod:`._admin`).

    Args:
        url: ``kafka://host:port[,host:port][?store=...&prefix=...&partitions=4]``, or
            its parsed settings.
        store: the state store (the one ``store=`` names, opened by the caller).

    Raises:
        ConfigError: the URL is malformed (see :meth:`KafkaSettings.parse`).
    """

    scheme = "kafka"

    def __init__(self, url: str | KafkaSettings, store: StateStore) -> None:
        settings = url if isinstance(url, KafkaSettings) else KafkaSettings.parse(url)
        self.settings = settings
        self.url = settings.url
        self.bootstrap = settings.bootstrap
        self.prefix = settings.prefix
        self.partitions = settings.partitions
        self.store = store
        self._errors = DriverErrors(
            "kafka",
            settings.describe,
            _UNAVAILABLE,
            (kafka_errors.KafkaError,),
            on_unavailable=self._forget,
        )
        self._clients = KafkaClients(settings, self._errors)
        self._producer = Producer(self._clients, self._errors)
        self._reader = LogReader(self._clients, self._errors, self._producer.acknowledged)

    @property
    def clients(self) -> KafkaClients:
        """This bus's aiokafka clients (shared with its work queue)."""
        return self._clients

    @property
    def errors(self) -> DriverErrors:
        """This bus's error translation."""
        return self._errors

    def __repr__(self) -> str:
        return f"<KafkaLog {self.bootstrap} prefix={self.prefix!r}>"

    async def _forget(self) -> None:
        # After an outage, start afresh: drop this loop's clients and everything learnt
        # from the broker (one that lost its data, or moved partitions, must not be
        # trusted from memory).
        self._producer.forget()
        await self._clients.forget()

    async def connect(self) -> None:
        """Start this loop's clients (checks the broker is there)."""
        await self._clients.conn()

    async def aclose(self) -> None:
        """Wait for this loop's produce rounds, then close every loop's clients."""
        await self._clients.aclose()

    async def cluster_id(self) -> str:
        """The Kafka cluster ID the brokers report (the
        :class:`~afterward.events._protocols.ClusterLog` capability): the state store
        is bound to it at connect."""
        conn = await self._clients.conn()
        async with self._errors("reading the cluster ID"):
            found = (await conn.admin.describe_cluster()).get("cluster_id")
        # A broker too old to report one (metadata v1): the bootstrap address instead.
        return str(found or f"kafka:{self.bootstrap}")

    # -- the log ----------------------------------------------------------------------

    async def append(self, records: Sequence[AppendRecord]) -> None:
        """Publish ``records`` (creating missing topics); see :mod:`._producer`."""
        await self._producer.append(records)

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        """Up to ``limit`` events of ``topic`` at or after ``positions``, without a group."""
        return await self._reader.read(topic, positions, limit)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the offset the next event will get."""
        return await self._reader.end_offsets(topic)

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        """Per partition, the first offset with a timestamp at or after ``since``."""
        return await self._reader.offsets_for_time(topic, since)

    # -- retention (RetainedLog) -----------------------------------------------------

    def retain_by(self, retention_of: Callable[[str], float | None]) -> None:
        """Create topics with ``retention.ms`` from ``retention_of(topic)`` (seconds)."""
        self._clients.retention_of = retention_of

    async def keep_for(self, topic: str, seconds: float | None) -> None:
        """Set ``topic``'s ``retention.ms`` unless this process already gave it that
        retention; a topic that does not exist yet gets it when it is created."""
        clients = self._clients
        if topic in clients.retained and clients.retained[topic] == seconds:
            return
        if not await clients.partition_count(topic, create=False):
            return
        conn = await clients.conn()
        async with self._errors(f"setting the retention of {topic!r}"):
            await set_retention(conn.admin, self.settings.topic(topic), seconds)
        clients.retained[topic] = seconds

    # -- groups -----------------------------------------------------------------------

    async def join(self, group: str, topic: str, claim_ttl: float) -> Member:
        """Join the Kafka consumer group ``group`` on ``topic`` (the :class:`GroupLog`
        capability): the broker shares the topic's partitions among the members. A dead
        member is noticed after ``session_timeout_ms``; ``claim_ttl`` is not used."""
        await self._clients.partition_count(topic, create=True)
        return await join(self.settings, self.store, self._errors, group, topic)

    # -- dead letters -----------------------------------------------------------------

    def _dlq_topic(self, letter: StoredDeadLetter) -> str:
        name = f"{self.settings.topic(letter.topic)}.dlq.{letter.group}"
        return _BAD_TOPIC_CHARS.sub("_", name)[:249]  # Kafka's longest topic name

    async def mirror_dead_letter(self, letter: StoredDeadLetter, *, removed: bool) -> None:
        """Copy ``letter`` to ``<topic>.dlq.<group>`` (a tombstone once ``removed``)."""
        conn = await self._clients.conn()
        value = None if removed else letter.record.value
        headers = (
            []
            if value is None
            else [
                *letter.record.headers,
                ("afterward-error", letter.error.encode()[:4096]),
                ("afterward-attempts", str(letter.attempts).encode()),
            ]
        )
        async with self._errors("writing the dead-letter topic"):
            await conn.producer.send_and_wait(
                self._dlq_topic(letter), value, key=letter.id.encode(), headers=headers
            )
