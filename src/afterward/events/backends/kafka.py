"""``kafka://host:port[,host:port]``: the bus on Apache Kafka (``afterward[kafka]``, aiokafka).

What lives where:

- **Events** are Kafka records on the topic of the same name (after the optional
  ``prefix``): the event key is the record key, so per-key order is partition order
  (Kafka's murmur2 partitioner; a keyless event is placed by the hash of its ID, so a
  producer retrying the same ``id=`` lands on the same partition). The value is the JSON
  envelope; the event ID and timestamp also travel as headers (``afterward-id``,
  ``afterward-occurred-at``) for tools that do not parse values. Missing topics are
  created with ``partitions`` partitions (4 by default).
- **Consumer groups** are Kafka consumer groups named like the afterward group: the
  broker shares a topic's partitions among the processes consuming it and rebalances
  as they come and go (:meth:`KafkaLog.join`, :class:`_KafkaMember`). A member losing a
  partition first commits its batch in flight; a member that died is replaced after
  ``session_timeout_ms``.
- **Positions, processed IDs, key versions and dead letters** live in a *state store*:
  any other afterward backend URL, given as ``store=`` (``redis://...`` for several
  machines; the default, ``sqlite:///afterward.db``, suits one machine). A batch's
  positions, processed IDs and versions are one write there; members start each
  partition they are assigned at the store's position. The same offsets are then
  committed to the Kafka group in the background, for Kafka's own tools
  (``kafka-consumer-groups --describe`` shows them and the lag).
  Dead letters are also copied to the ``<topic>.dlq.<group>`` topic (a tombstone marks
  one retried or discarded) for Kafka-side tooling; the store's copy is the one
  listed, retried and discarded.
- **Publishing**: concurrent appends of an event loop are written together, one record
  batch per partition per round; each append settles from its own partitions.

URL options (query string): ``store=<url>`` (URL-encoded), ``prefix=`` (prepended to every
Kafka topic and group name, to share a cluster), ``partitions=`` (for created topics),
``request_timeout_ms=`` (how long a publish waits for an unreachable broker before
:class:`~afterward.BackendUnavailable`, 40 s by default), ``session_timeout_ms=`` (10 s)
and ``rebalance_timeout_ms=`` (60 s) for the consumer groups, ``client_id=``.

Apache Kafka cannot append several records atomically without transactions, and
aiokafka's transactional producer is not used (several Kafka-compatible brokers reject
it): one ``publish`` is atomic, a ``publish_many`` batch is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from afterward._exceptions import BackendError, BackendUnavailable, ConfigError
from afterward._loop import background_loop, in_background_loop
from afterward.events._protocols import Backend, ConnectContext, Member, StateStore
from afterward.events._records import AppendRecord, Done, StoredDeadLetter, StoredEvent
from afterward.events.backends._kafka_clients import (
    Conn as _Conn,
)
from afterward.events.backends._kafka_clients import (
    Reader as _Reader,
)
from afterward.events.backends._kafka_clients import (
    background_conns as _background_conns,
)
from afterward.events.backends._kafka_clients import (
    close as _close,
)
from afterward.events.backends._kafka_clients import (
    start as _start,
)
from afterward.events.backends._loops import close_on_their_loops

__all__ = ["KafkaLog"]

logger = logging.getLogger("afterward.events")

_UNAVAILABLE = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.RequestTimedOutError,
    kafka_errors.NodeNotReadyError,
    OSError,
)
_READERS_PER_TOPIC = 4
_PARTITION_CACHE = 100_000
_BAD_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def _options(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    if not parts.netloc:
        raise ConfigError(f"a Kafka bus URL looks like kafka://host:9092, got {url!r}")
    return parts.netloc, dict(parse_qsl(parts.query))


class KafkaLog(ConnectContext):
    """An event log on Kafka, with its state in another backend. See the module docstring.

    Args:
        url: ``kafka://host:port[,host:port][?store=...&prefix=...&partitions=4]``.
    """

    scheme = "kafka"

    def __init__(self, url: str, store: StateStore) -> None:
        self.url = url
        self.bootstrap, options = _options(url)
        self.prefix = options.pop("prefix", "")
        options.pop("store", None)  # opened by open_backend
        try:
            self.partitions = int(options.pop("partitions", "4"))
            self._timeout_ms = int(options.pop("request_timeout_ms", "40000"))
        except ValueError as exc:
            raise ConfigError(f"bad number in Kafka bus URL {url!r}: {exc}") from exc
        self._client_id = options.pop("client_id", "afterward")
        try:
            self._session_ms = int(options.pop("session_timeout_ms", "10000"))
            self._rebalance_ms = int(options.pop("rebalance_timeout_ms", "60000"))
        except ValueError as exc:
            raise ConfigError(f"bad number in Kafka bus URL {url!r}: {exc}") from exc
        if options:
            raise ConfigError(f"unknown Kafka bus URL options {sorted(options)} in {url!r}")
        self.store = store
        self._conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Conn] = (
            weakref.WeakKeyDictionary()
        )
        self._partitions: dict[str, int] = {}
        self._produced: dict[str, dict[int, int]] = {}
        self._partition_cache: dict[tuple[str, str], int] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- plumbing ---------------------------------------------------------------------

    def _topic(self, topic: str) -> str:
        return self.prefix + topic

    @contextlib.asynccontextmanager
    async def _errors(self, doing: str) -> AsyncIterator[None]:
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            yield
        except BackendError:
            raise
        except _UNAVAILABLE as exc:
            await self._forget()
            raise BackendUnavailable(
                f"Kafka bus {self.bootstrap} unreachable while {doing}: {exc!r}", backend="kafka"
            ) from exc
        except kafka_errors.KafkaError as exc:
            raise BackendError(
                f"Kafka bus {self.bootstrap} failed while {doing}: {exc!r}", backend="kafka"
            ) from exc
        # A driver that finishes a request after its task was cancelled must not swallow
        # the cancellation (a consumer would never stop): give it back.
        if task is not None and task.cancelling() > cancelling:
            raise asyncio.CancelledError(f"cancelled while {doing}")

    async def _forget(self) -> None:
        """Drop this loop's clients and what they cached: after an outage, start afresh
        (a broker that lost its data, or moved partitions, must not be trusted from
        memory)."""
        self._partitions.clear()
        self._produced.clear()
        self._partition_cache.clear()
        loop = asyncio.get_running_loop()
        conns: Any = _background_conns if in_background_loop() else self._conns
        conn = conns.pop(self.url if in_background_loop() else loop, None)
        if conn is not None:
            # Closed before the error surfaces, so no reconnection of the old clients
            # races with whatever the caller does next.
            task = loop.create_task(_close(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            await asyncio.wait({task}, timeout=self._timeout_ms / 1000)

    async def _conn(self) -> _Conn:
        loop = asyncio.get_running_loop()
        # The sync twins' loop lives as long as the process and a sync user (Flask,
        # Django) rarely closes the bus: its clients are kept per URL so none is
        # garbage-collected unclosed.
        conns: Any = _background_conns if in_background_loop() else self._conns
        ident: Any = self.url if in_background_loop() else loop
        conn: _Conn | None = conns.get(ident)
        if conn is not None:
            return conn
        common: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self._client_id,
            "request_timeout_ms": self._timeout_ms,
        }
        producer = AIOKafkaProducer(
            **common, acks="all", enable_idempotence=False, linger_ms=2, max_batch_size=65536
        )
        meta = AIOKafkaConsumer(**common, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            request_timeout_ms=self._timeout_ms,
        )
        try:
            async with self._errors("connecting"):
                for client in (producer, meta, admin):
                    await client.start()
        except BaseException:
            # Close all three, the one whose start() failed included: aiokafka warns
            # "Unclosed ..." for a client that was created and never stopped.
            for client in (producer, meta, admin):
                with contextlib.suppress(Exception):
                    await (client.close() if client is admin else client.stop())
            raise
        conn = conns.setdefault(ident, _Conn(producer, meta, admin))
        if conn.producer is not producer:  # another task of this loop won the race
            await producer.stop()
            await meta.stop()
            await admin.close()
        return conn

    async def _topic_partitions(self, topic: str, create: bool) -> int:
        """Partition count of ``topic`` (0 when it does not exist and ``create`` is false)."""
        if topic in self._partitions:
            return self._partitions[topic]
        conn = await self._conn()
        name = self._topic(topic)
        async with self._errors(f"reading metadata of {topic!r}"):
            metadata = await conn.producer.client.fetch_all_metadata()
            found = metadata.partitions_for_topic(name)
            if not found and create:
                with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):
                    await conn.admin.create_topics([NewTopic(name, self.partitions, 1)])
                await conn.producer.client.force_metadata_update()
                metadata = await conn.producer.client.fetch_all_metadata()
                found = metadata.partitions_for_topic(name)
        if found:
            self._partitions[topic] = len(found)
        return len(found or ())

    async def connect(self) -> None:
        await self._conn()

    async def aclose(self) -> None:
        current = asyncio.get_running_loop()
        closing = [t for t in self._closing if t.get_loop() is current]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
        conns, self._conns = dict(self._conns), weakref.WeakKeyDictionary()
        background = _background_conns.pop(self.url, None)
        if background is not None:
            conns[background_loop()] = background
        await close_on_their_loops(conns, _close)

    # -- the log ----------------------------------------------------------------------

    def _partition(self, record: AppendRecord) -> int:
        # Kafka's default partitioner (murmur2 of the key); a keyless event by the hash
        # of its ID, so a producer retrying the same ``id=`` lands on the same partition.
        # murmur2 is pure Python in aiokafka: remember it for the keys seen recently.
        count = self._partitions[record.topic]
        cache_key = (record.topic, record.key) if record.key is not None else None
        if cache_key is not None:
            found = self._partition_cache.get(cache_key)
            if found is not None:
                return found
        text = record.key if record.key is not None else record.event_id
        partition: int = (murmur2(text.encode()) & 0x7FFFFFFF) % count
        if cache_key is not None:
            if len(self._partition_cache) >= _PARTITION_CACHE:
                self._partition_cache.clear()
            self._partition_cache[cache_key] = partition
        return partition

    async def append(self, records: Sequence[AppendRecord]) -> None:
        if not records:
            return
        conn = await self._conn()
        for topic in {r.topic for r in records}:
            if topic not in self._partitions and not await self._topic_partitions(topic, True):
                raise BackendError(
                    f"Kafka topic {topic!r} has no partitions yet (just created?): retry",
                    backend="kafka",
                )
        placed = [(r, self._partition(r)) for r in records]
        # Concurrent appends of this loop are coalesced: one flusher task per loop
        # writes every append waiting when it runs as one record batch per partition.
        # While it waits for the broker to take a partition's previous batch, new
        # appends gather for its next round.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        conn.pending.append((placed, waiter))
        if conn.flusher is None or conn.flusher.done():
            conn.flusher = self._track(loop.create_task(self._flush(conn)))
        try:
            ends: dict[tuple[str, int], int] = await waiter
        except Exception:
            async with self._errors(f"publishing to {records[0].topic!r}"):
                raise  # translated into a BackendError (not entered on the fast path)
        # What the broker acknowledged is a lower bound of the end offsets (some
        # Kafka-compatible brokers under-report ListOffsets after a batched produce).
        for (topic, partition), end in ends.items():
            known = self._produced.setdefault(topic, {})
            known[partition] = max(known.get(partition, 0), end)

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Keep ``task`` until it ends; ``aclose`` waits for the ones still running."""
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def _flush(self, conn: _Conn) -> None:
        while conn.pending:
            rounds, conn.pending = conn.pending, []
            try:
                deliveries = await self._send_round(conn, rounds)
            except BaseException as exc:  # cancelled: nobody may wait forever
                _settle(rounds, {}, {}, exc)
                raise
            self._track(asyncio.get_running_loop().create_task(_acknowledged(rounds, deliveries)))

    async def _send_round(self, conn: _Conn, rounds: list[tuple[list[Any], Any]]) -> Deliveries:
        """Hand the records of ``rounds`` to the producer as one batch per partition
        (more when a batch is full); per partition, its (batch, delivery) pairs or the
        error that stopped it."""
        by_partition: dict[tuple[str, int], list[AppendRecord]] = {}
        for placed, _ in rounds:
            for record, partition in placed:
                by_partition.setdefault((record.topic, partition), []).append(record)
        deliveries: Deliveries = {}
        for (topic, partition), records in by_partition.items():
            sent: list[tuple[Any, Any]] = []
            deliveries[(topic, partition)] = sent
            try:
                batch = conn.producer.create_batch()
                for record in records:
                    if not _add(batch, record):  # full (aiokafka takes any first record)
                        sent.append((batch, await self._send(conn, batch, topic, partition)))
                        batch = conn.producer.create_batch()
                        _add(batch, record)
                sent.append((batch, await self._send(conn, batch, topic, partition)))
            except Exception as exc:
                deliveries[(topic, partition)] = exc
                for _, delivery in sent:  # retrieved, so no "exception never retrieved"
                    delivery.add_done_callback(_retrieve)
        return deliveries

    async def _send(self, conn: _Conn, batch: Any, topic: str, partition: int) -> Any:
        return await conn.producer.send_batch(batch, self._topic(topic), partition=partition)

    async def _reader(self, conn: _Conn, topic: str, want: dict[int, int]) -> _Reader:
        readers = conn.readers.setdefault(topic, [])
        for reader in readers:
            if reader.next == want:
                return reader
        if len(readers) < _READERS_PER_TOPIC:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=self._client_id,
                request_timeout_ms=self._timeout_ms,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=100,
            )
            await _start(consumer, conn)
            readers.append(_Reader(consumer))
            return readers[-1]
        return min(readers, key=lambda r: r.used)

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        count = await self._topic_partitions(topic, create=False)
        if not count:
            return []
        conn = await self._conn()
        want = {p: positions.get(p, 0) for p in range(count)}
        name = self._topic(topic)
        async with self._errors(f"reading {topic!r}"):
            reader = await self._reader(conn, topic, want)
            async with reader.lock:
                reader.used = time.monotonic()
                consumer = reader.consumer
                if reader.next != want:
                    tps = [TopicPartition(name, p) for p in range(count)]
                    if set(consumer.assignment()) != set(tps):
                        consumer.assign(tps)
                    for tp in tps:
                        consumer.seek(tp, want[tp.partition])
                    reader.next = dict(want)
                batches = await consumer.getmany(timeout_ms=0, max_records=limit)
                if not batches and await self._behind(topic, want, consumer):
                    # Data is there but not fetched yet (just seeked): wait for it.
                    batches = await consumer.getmany(timeout_ms=2000, max_records=limit)
        events: list[StoredEvent] = []
        for tp, messages in batches.items():
            for message in messages:
                events.append(StoredEvent(topic, tp.partition, message.offset, message.value))
            if messages:
                reader.next[tp.partition] = messages[-1].offset + 1
        return events

    async def _behind(self, topic: str, want: Mapping[int, int], reader: Any) -> bool:
        name = self._topic(topic)
        marks = [reader.highwater(TopicPartition(name, p)) for p in want]
        if all(mark is not None for mark in marks):
            return any(mark > want[p] for p, mark in zip(want, marks, strict=True))
        ends = await self.end_offsets(topic)
        return any(end > want.get(p, 0) for p, end in ends.items())

    async def _every_partition(self, topic: str) -> tuple[_Conn, list[TopicPartition]]:
        """This loop's clients and every partition of ``topic`` (none if it is unknown)."""
        count = await self._topic_partitions(topic, create=False)
        conn = await self._conn()
        return conn, [TopicPartition(self._topic(topic), p) for p in range(count)]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        conn, tps = await self._every_partition(topic)
        if not tps:
            return {}
        async with self._errors(f"reading the end of {topic!r}"):
            ends = await conn.meta.end_offsets(tps)
        result = {tp.partition: offset for tp, offset in ends.items()}
        for partition, end in self._produced.get(topic, {}).items():
            result[partition] = max(result.get(partition, 0), end)
        # A reader's high watermark comes with every fetch; trust the larger of the two
        # (some Kafka-compatible brokers under-report ListOffsets after batched produce).
        for reader in conn.readers.get(topic, []):
            for tp in tps:
                mark = reader.consumer.highwater(tp)
                if mark is not None and mark > result[tp.partition]:
                    result[tp.partition] = mark
        return result

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        conn, tps = await self._every_partition(topic)
        if not tps:
            return {}
        async with self._errors(f"searching {topic!r} by time"):
            found = await conn.meta.offsets_for_times(
                {tp: int(since.timestamp() * 1000) for tp in tps}
            )
        ends = await self.end_offsets(topic)
        starts = {
            tp.partition: ends[tp.partition] if hit is None else hit.offset
            for tp, hit in found.items()
        }
        # Kafka timestamps are milliseconds: skip the events of that millisecond that
        # are still before ``since`` (the header carries the full timestamp).
        return await self._skip_before(topic, starts, ends, since.timestamp())

    async def _skip_before(
        self, topic: str, starts: dict[int, int], ends: dict[int, int], since: float
    ) -> dict[int, int]:
        pending = {p: o for p, o in starts.items() if o < ends[p]}
        if not pending:
            return starts
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            request_timeout_ms=self._timeout_ms,
            enable_auto_commit=False,
        )
        async with self._errors(f"searching {topic!r} by time"):
            await _start(consumer, None)
            try:
                tps = {p: TopicPartition(self._topic(topic), p) for p in pending}
                consumer.assign(list(tps.values()))
                for p, offset in pending.items():
                    consumer.seek(tps[p], offset)
                while pending:
                    batches = await consumer.getmany(timeout_ms=2000)
                    if not batches:
                        break
                    for tp, messages in batches.items():
                        for message in messages:
                            if tp.partition not in pending:
                                break
                            if _occurred_at(message) >= since:
                                del pending[tp.partition]
                            else:
                                starts[tp.partition] = message.offset + 1
                                if starts[tp.partition] >= ends[tp.partition]:
                                    del pending[tp.partition]
                        if tp.partition not in pending:
                            consumer.pause(tp)
            finally:
                await consumer.stop()
        return starts

    # -- groups -----------------------------------------------------------------------

    async def join(self, group: str, topic: str, claim_ttl: float) -> Member:
        """Join the Kafka consumer group ``group`` on ``topic`` (the :class:`GroupLog`
        capability): the broker shares the topic's partitions among the members. A dead
        member is noticed after ``session_timeout_ms``; ``claim_ttl`` is not used."""
        await self._topic_partitions(topic, create=True)
        member = _KafkaMember(self, group, topic)
        # A JoinGroup request lasts up to the rebalance timeout: give it that and more.
        request_ms = max(self._timeout_ms, self._rebalance_ms + 5000)
        consumer = member.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            request_timeout_ms=request_ms,
            group_id=self.prefix + group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_ms,
            heartbeat_interval_ms=max(100, self._session_ms // 3),
            rebalance_timeout_ms=self._rebalance_ms,
            max_poll_interval_ms=max(self._rebalance_ms, 300_000),
        )
        consumer.subscribe([self._topic(topic)], listener=member)
        try:
            async with self._errors(f"joining group {group!r}"):
                # start() returns once the group assigned this member its partitions.
                await asyncio.wait_for(_start(consumer, None), 2 * request_ms / 1000)
        except TimeoutError as exc:  # the builtin one: not an outage of the whole bus
            raise BackendError(
                f"Kafka group {group!r} did not complete a join within {2 * request_ms} ms",
                backend="kafka",
            ) from exc
        member.raise_failure()
        return member

    # -- dead letters -----------------------------------------------------------------

    def _dlq_topic(self, letter: StoredDeadLetter) -> str:
        return _BAD_TOPIC_CHARS.sub("_", f"{self._topic(letter.topic)}.dlq.{letter.group}")[:249]

    async def _mirror(self, letter: StoredDeadLetter, value: bytes | None) -> None:
        conn = await self._conn()
        headers = (
            []
            if value is None
            else [
                ("afterward-error", letter.error.encode()[:4096]),
                ("afterward-attempts", str(letter.attempts).encode()),
            ]
        )
        async with self._errors("writing the dead-letter topic"):
            await conn.producer.send_and_wait(
                self._dlq_topic(letter), value, key=letter.id.encode(), headers=headers
            )

    async def mirror_dead_letter(self, letter: StoredDeadLetter, *, removed: bool) -> None:
        """Copy ``letter`` to ``<topic>.dlq.<group>`` (a tombstone once ``removed``)."""
        await self._mirror(letter, None if removed else letter.payload)


#: Per (topic, partition) of a produce round: its (batch, delivery future) pairs, or the
#: error that kept its records from the producer.
Deliveries = dict[tuple[str, int], "list[tuple[Any, Any]] | Exception"]


async def _acknowledged(rounds: list[tuple[list[Any], Any]], deliveries: Deliveries) -> None:
    """Wait for the broker's acknowledgements of a round and settle its appends."""
    ends: dict[tuple[str, int], int] = {}
    failed: dict[tuple[str, int], BaseException] = {}
    try:
        for key, sent in deliveries.items():
            if isinstance(sent, Exception):
                failed[key] = sent
                continue
            results = await asyncio.gather(*(d for _, d in sent), return_exceptions=True)
            for (batch, _), metadata in zip(sent, results, strict=True):
                if isinstance(metadata, BaseException):
                    failed.setdefault(key, metadata)
                else:
                    ends[key] = max(ends.get(key, 0), metadata.offset + batch.record_count())
    except BaseException as exc:  # cancelled: nobody may wait forever
        _settle(rounds, {}, {}, exc)
        raise
    _settle(rounds, ends, failed, None)


def _settle(
    rounds: list[tuple[list[Any], Any]],
    ends: dict[tuple[str, int], int],
    failed: dict[tuple[str, int], BaseException],
    everything: BaseException | None,
) -> None:
    """Resolve each append's waiter from its own partitions: the first error of one of
    them (or ``everything``'s), else the end offsets the broker acknowledged (all of the
    round's: each is a true lower bound of its partition's end)."""
    for placed, waiter in rounds:
        if waiter.done():
            continue
        error = everything
        if error is None and failed:
            error = next((failed[(r.topic, p)] for r, p in placed if (r.topic, p) in failed), None)
        if isinstance(error, asyncio.CancelledError):
            waiter.cancel()
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(ends)


def _retrieve(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled():
        delivery.exception()


def _add(batch: Any, record: AppendRecord) -> bool:
    """Append ``record`` to an aiokafka batch builder; false when the batch is full."""
    added = batch.append(
        key=None if record.key is None else record.key.encode(),
        value=record.payload,
        timestamp=int(record.timestamp * 1000),
        headers=[
            ("afterward-id", record.event_id.encode()),
            ("afterward-occurred-at", repr(record.timestamp).encode()),
        ],
    )
    return added is not None


def _occurred_at(message: Any) -> float:
    for name, value in message.headers or ():
        if name == "afterward-occurred-at":
            return float(value)
    return float(message.timestamp) / 1000


class _KafkaMember(ConsumerRebalanceListener):  # type: ignore[misc]
    """A member of a Kafka consumer group (see :meth:`KafkaLog.join`).

    Rebalance safety: when the broker takes partitions away, ``on_partitions_revoked``
    waits for the batch in flight to be handled and committed before the group moves
    on, so the next owner starts after it; a member that died mid-batch (kill -9)
    committed nothing of that batch, and its next owner skips the IDs the state store
    already has.
    """

    def __init__(self, log: KafkaLog, group: str, topic: str) -> None:
        self.log = log
        self.group = group
        self.topic = topic
        self.name = log._topic(topic)
        self.consumer: AIOKafkaConsumer | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._failure: Exception | None = None
        self._unmirrored: dict[TopicPartition, int] = {}
        self._mirror: asyncio.Task[None] | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._idle.wait()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # The state store's positions are the group's (committed with the processed IDs
        # in one write): start every partition there. Paused until then, so nothing is
        # fetched from Kafka's own committed offsets meanwhile.
        consumer = self._consumer()
        consumer.pause(*assigned)
        try:
            positions = await self.log.store.positions(self.group, self.topic) or {}
        except Exception as exc:  # aiokafka would only log it: fetch raises it instead
            self._failure = exc
            return
        for tp in assigned:
            consumer.seek(tp, positions.get(tp.partition, 0))
        consumer.resume(*assigned)

    def raise_failure(self) -> None:
        """Raise what went wrong in a rebalance callback, if anything did."""
        if self._failure is not None:
            raise BackendError(
                f"group {self.group!r} could not start its partitions of {self.topic!r}: "
                f"{self._failure!r}",
                backend="kafka",
            ) from self._failure

    def _consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            raise BackendError("this Kafka group member is closed", backend="kafka")
        return self.consumer

    async def fetch(self, limit: int, timeout: float) -> Sequence[StoredEvent]:
        consumer = self._consumer()
        self.raise_failure()
        async with self.log._errors(f"reading {self.topic!r} for group {self.group!r}"):
            batches = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=limit)
            if not batches and await self._behind(consumer):
                # Assigned, data there, not fetched yet (the first fetch): wait for it.
                batches = await consumer.getmany(timeout_ms=2000, max_records=limit)
        events = [
            StoredEvent(self.topic, tp.partition, m.offset, m.value)
            for tp, messages in batches.items()
            for m in messages
        ]
        if events:
            self._idle.clear()
        return events

    async def _behind(self, consumer: AIOKafkaConsumer) -> bool:
        try:
            for tp in consumer.assignment() - consumer.paused():
                mark = consumer.highwater(tp)
                if mark is None or mark > await consumer.position(tp):
                    return True
        except kafka_errors.IllegalStateError:  # revoked meanwhile (a rebalance)
            return False
        return False

    async def commit(self, positions: Mapping[int, int], done: Sequence[Done]) -> None:
        consumer = self._consumer()
        try:
            await self.log.store.commit(self.group, self.topic, positions, done)
        finally:
            self._idle.set()
        # The same offsets in Kafka, for Kafka's own tooling (lag in kafka-consumer-groups),
        # in the background: the store's copy is the one members start from.
        self._unmirrored.update({TopicPartition(self.name, p): o for p, o in positions.items()})
        if self._mirror is None or self._mirror.done():
            self._mirror = asyncio.create_task(self._mirror_offsets(consumer))

    async def _mirror_offsets(self, consumer: AIOKafkaConsumer) -> None:
        while self._unmirrored:
            assigned = consumer.assignment()
            offsets = {tp: o for tp, o in self._unmirrored.items() if tp in assigned}
            self._unmirrored = {}
            if not offsets:
                continue
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # a rebalance, an outage: the next commit catches up
                logger.info("group %r: Kafka offsets not committed (%r)", self.group, exc)

    async def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        self._idle.set()
        if consumer is not None:
            if self._mirror is not None:
                # The last offsets reach Kafka's tools unless the broker is gone.
                await asyncio.wait({self._mirror}, timeout=min(5.0, self.log._timeout_ms / 1000))
                self._mirror.cancel()
                # Its own cancellation comes back as a result; a cancellation of close()
                # itself still propagates.
                await asyncio.gather(self._mirror, return_exceptions=True)
            with contextlib.suppress(Exception):
                await consumer.stop()


def open_backend(url: str, open_store: Callable[[str], StateStore]) -> Backend:
    """The backend of a ``kafka://`` URL: the log in Kafka, the state in ``store=``."""
    _, options = _options(url)
    store_url = options.get("store", "sqlite:///afterward.db")
    if store_url.split("://", 1)[0].lower() == "kafka":
        raise ConfigError("the state store of a Kafka bus cannot be Kafka itself")
    store = open_store(store_url)
    return Backend(KafkaLog(url, store), store)
