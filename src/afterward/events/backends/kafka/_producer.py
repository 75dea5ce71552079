"""Appending: records placed on partitions and written in coalesced produce rounds.

Concurrent appends of one event loop are coalesced: one flusher task per loop takes
every append waiting when it runs and writes them as one record batch per partition
(``create_batch`` + ``send_batch``, skipping aiokafka's per-message ``send``); while it
waits for the broker to take a partition's previous batch, new appends gather for its
next round. Each append settles from its own partitions' acknowledgements: a failed
partition fails only the appends that had records there.

The wire format: the event key is the record key, the value is the JSON envelope, the
timestamp is the event's (in milliseconds), and the headers ``afterward-id`` and
``afterward-occurred-at`` carry the event ID and the full timestamp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import murmur2

from afterward._exceptions import BackendError
from afterward.events._records import AppendRecord
from afterward.events.backends._driver import DriverErrors
from afterward.events.backends.kafka._clients import Conn, Ends, KafkaClients, Placed

__all__ = ["Producer"]

#: How many (topic, key) partitions to remember (murmur2 is pure Python in aiokafka).
_PARTITION_CACHE = 100_000

#: A produce round: the appends it settles, each with its waiter.
Round = list[tuple[Placed, "asyncio.Future[Ends]"]]
#: Per (topic, partition) of a round: its (batch, delivery future) pairs, or the error
#: that kept its records from the producer.
Deliveries = dict[tuple[str, int], "list[tuple[Any, asyncio.Future[Any]]] | Exception"]


class Producer:
    """The appends of one bus (see the module docstring).

    Args:
        clients: the bus's clients (and where topics are looked up and created).
        errors: translates aiokafka's errors.
    """

    def __init__(self, clients: KafkaClients, errors: DriverErrors) -> None:
        self._clients = clients
        self._errors = errors
        self._topic = clients.settings.topic
        self._acknowledged: dict[str, dict[int, int]] = {}
        self._partition_cache: dict[tuple[str, str], int] = {}

    def forget(self) -> None:
        """Drop what was learnt from the broker (after an outage)."""
        self._acknowledged.clear()
        self._partition_cache.clear()

    def acknowledged(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the highest end offset a produce round was
        acknowledged with: a lower bound of the end (some Kafka-compatible brokers
        under-report ListOffsets after a batched produce)."""
        return self._acknowledged.get(topic, {})

    async def append(self, records: Sequence[AppendRecord]) -> None:
        """Write ``records`` in this loop's next produce round and wait for the broker."""
        if not records:
            return
        conn = await self._clients.conn()
        counts: dict[str, int] = {}
        for topic in {r.topic for r in records}:
            count = self._clients.known_partition_count(topic)
            if count is None:
                count = await self._clients.partition_count(topic, create=True)
            if not count:
                raise BackendError(
                    f"Kafka topic {topic!r} has no partitions yet (just created?): retry",
                    backend="kafka",
                )
            counts[topic] = count
        placed = [(r, self._partition(r, counts[r.topic])) for r in records]
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Ends] = loop.create_future()
        conn.pending.append((placed, waiter))
        if conn.flusher is None or conn.flusher.done():
            conn.flusher = self._clients.track(loop.create_task(self._flush(conn)))
        try:
            ends = await waiter
        except Exception:
            async with self._errors(f"publishing to {records[0].topic!r}"):
                raise  # translated into a BackendError (not entered on the fast path)
        for (topic, partition), end in ends.items():
            known = self._acknowledged.setdefault(topic, {})
            known[partition] = max(known.get(partition, 0), end)

    def _partition(self, record: AppendRecord, count: int) -> int:
        # Kafka's default partitioner (murmur2 of the key); a keyless event by the hash
        # of its ID, so a producer retrying the same ``id=`` lands on the same partition.
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

    async def _flush(self, conn: Conn) -> None:
        while conn.pending:
            rounds, conn.pending = conn.pending, []
            try:
                deliveries = await self._send_round(conn, rounds)
            except BaseException as exc:  # cancelled: nobody may wait forever
                _settle(rounds, {}, {}, exc)
                raise
            self._clients.track(
                asyncio.get_running_loop().create_task(_acknowledged(rounds, deliveries))
            )

    async def _send_round(self, conn: Conn, rounds: Round) -> Deliveries:
        """Hand the records of ``rounds`` to the producer as one batch per partition
        (more when a batch is full); per partition, its (batch, delivery) pairs or the
        error that stopped it."""
        by_partition: dict[tuple[str, int], list[AppendRecord]] = {}
        for placed, _ in rounds:
            for record, partition in placed:
                by_partition.setdefault((record.topic, partition), []).append(record)
        deliveries: Deliveries = {}
        for (topic, partition), records in by_partition.items():
            sent: list[tuple[Any, asyncio.Future[Any]]] = []
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

    async def _send(self, conn: Conn, batch: Any, topic: str, partition: int) -> Any:
        return await conn.producer.send_batch(batch, self._topic(topic), partition=partition)


async def _acknowledged(rounds: Round, deliveries: Deliveries) -> None:
    """Wait for the broker's acknowledgements of a round and settle its appends."""
    ends: Ends = {}
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
    rounds: Round,
    ends: Ends,
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
        value=record.value,
        timestamp=int(record.timestamp * 1000),
        headers=list(record.headers),  # CloudEvents binary mode: ce_* headers
    )
    return added is not None
