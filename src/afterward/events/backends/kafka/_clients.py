"""The aiokafka clients of one bus, one set per event loop, and what they tell of topics.

aiokafka binds each client to the loop it started on, so :class:`KafkaClients` keeps one
:class:`Conn` per loop with :class:`~afterward.events.backends._driver.LoopClients`
(which also keeps the sync twins' background-loop clients until exit). A :class:`Conn`
holds the producer, a group-less consumer for metadata and offsets, the admin client,
the group-less readers of :mod:`._reader` and the appends waiting for the next produce
round of :mod:`._producer`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from afterward.events._records import AppendRecord
from afterward.events.backends._driver import DriverErrors, LoopClients
from afterward.events.backends.kafka._admin import retention_configs
from afterward.events.backends.kafka._settings import KafkaSettings

__all__ = ["Conn", "Ends", "KafkaClients", "Placed", "Reader", "close", "start"]

#: The records of one append, each with the partition it goes to.
Placed = list[tuple[AppendRecord, int]]
#: End offsets the broker acknowledged, by (topic, partition).
Ends = dict[tuple[str, int], int]


@dataclass
class Reader:
    """A group-less consumer assigned every partition of one topic (see :mod:`._reader`).

    Attributes:
        next: the offset per partition its next fetch starts at.
        used: when it last served a read (:func:`time.monotonic`), to reuse the idlest.
    """

    consumer: AIOKafkaConsumer
    next: dict[int, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    used: float = 0.0


@dataclass
class Conn:
    """The aiokafka clients of one event loop, and that loop's produce rounds."""

    producer: AIOKafkaProducer
    meta: AIOKafkaConsumer
    admin: AIOKafkaAdminClient
    readers: dict[str, list[Reader]] = field(default_factory=dict)
    #: Appends waiting for the next produce round: (records with partitions, waiter).
    pending: list[tuple[Placed, asyncio.Future[Ends]]] = field(default_factory=list)
    #: The task writing ``pending`` to the producer, while there is any.
    flusher: asyncio.Task[None] | None = None
    closed: bool = False


async def start(consumer: AIOKafkaConsumer, conn: Conn | None) -> None:
    """Start ``consumer``; never leave it half-started or outliving a closed ``conn``."""
    try:
        await consumer.start()
        if conn is not None and conn.closed:
            raise kafka_errors.KafkaConnectionError("the connection was reset meanwhile")
    except BaseException:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise


async def close(conn: Conn) -> None:
    """Close every client of ``conn``, going on past the ones that fail."""
    conn.closed = True
    consumers = [r.consumer for rs in conn.readers.values() for r in rs]
    for client in [conn.producer, conn.meta, *consumers, conn.admin]:
        try:
            await (client.close() if client is conn.admin else client.stop())
        except asyncio.CancelledError:
            # aiokafka's fetcher re-raises the cancellation of its own inner task on
            # close; only a cancellation of *this* task may stop the cleanup.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception:  # a client of a broker that is gone: close the others anyway
            continue


class KafkaClients:
    """One bus's clients per event loop, its background tasks, and topic metadata.

    Args:
        settings: the bus URL's settings.
        errors: translates aiokafka's errors (its ``on_unavailable`` calls
            :meth:`forget`, through the log).
    """

    def __init__(self, settings: KafkaSettings, errors: DriverErrors) -> None:
        self.settings = settings
        self.errors = errors
        self._conns: LoopClients[Conn] = LoopClients("kafka", settings.url, close)
        self._partitions: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Each topic's retention in seconds (``None``: forever), for the topics created
        #: here (``retention.ms``); unset, they get the broker's default.
        self.retention_of: Callable[[str], float | None] | None = None
        #: The retention this process last gave each topic (created or set), by topic.
        self.retained: dict[str, float | None] = {}

    async def conn(self) -> Conn:
        """This loop's clients, started on first use."""
        conn = self._conns.get()
        if conn is not None:
            return conn
        settings = self.settings
        producer = AIOKafkaProducer(
            **settings.client_options(
                acks="all", enable_idempotence=False, linger_ms=2, max_batch_size=65536
            )
        )
        meta = AIOKafkaConsumer(**settings.client_options(enable_auto_commit=False))
        admin = AIOKafkaAdminClient(**settings.client_options())
        new = Conn(producer, meta, admin)
        try:
            async with self.errors("connecting"):
                for client in (producer, meta, admin):
                    await client.start()
        except BaseException:
            # Close all three, the one whose start() failed included: aiokafka warns
            # "Unclosed ..." for a client that was created and never stopped.
            await close(new)
            raise
        conn = self._conns.setdefault(new)
        if conn is not new:  # another task of this loop won the race
            await close(new)
        return conn

    def track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Keep ``task`` until it ends; :meth:`aclose` waits for the ones still running."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def forget(self) -> None:
        """Drop this loop's clients and the topic metadata: after an outage, start
        afresh (a broker that lost its data, or moved partitions, must not be trusted
        from memory)."""
        self._partitions.clear()
        self.retained.clear()
        conn = self._conns.pop()
        if conn is not None:
            # Closed before the error surfaces, so no reconnection of the old clients
            # races with whatever the caller does next.
            task = self.track(asyncio.get_running_loop().create_task(close(conn)))
            await asyncio.wait({task}, timeout=self.settings.request_timeout_ms / 1000)

    async def aclose(self) -> None:
        """Wait for this loop's background tasks, then close every loop's clients."""
        current = asyncio.get_running_loop()
        running = [t for t in self._tasks if t.get_loop() is current]
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await self._conns.close_all()

    async def partition_count(self, topic: str, create: bool, partitions: int | None = None) -> int:
        """Partition count of ``topic`` (0 when it does not exist and ``create`` is false).

        A topic created here gets ``partitions`` (by default the URL's ``partitions``)
        and, when the bus gave a :attr:`retention_of`, that topic's ``retention.ms``.
        """
        if topic in self._partitions:
            return self._partitions[topic]
        conn = await self.conn()
        name = self.settings.topic(topic)
        async with self.errors(f"reading metadata of {topic!r}"):
            metadata = await conn.producer.client.fetch_all_metadata()
            found = metadata.partitions_for_topic(name)
            if not found and create:
                await self._create(conn, topic, partitions or self.settings.partitions)
                await conn.producer.client.force_metadata_update()
                metadata = await conn.producer.client.fetch_all_metadata()
                found = metadata.partitions_for_topic(name)
        if found:
            self._partitions[topic] = len(found)
        return len(found or ())

    async def _create(self, conn: Conn, topic: str, partitions: int) -> None:
        name = self.settings.topic(topic)
        configs = None
        if self.retention_of is not None:
            keep = self.retention_of(topic)
            configs = retention_configs(keep)
            self.retained[topic] = keep
        new = NewTopic(name, partitions, 1, topic_configs=configs)
        with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):
            await conn.admin.create_topics([new])

    def known_partition_count(self, topic: str) -> int | None:
        """The cached partition count of ``topic`` (no I/O), if known."""
        return self._partitions.get(topic)
