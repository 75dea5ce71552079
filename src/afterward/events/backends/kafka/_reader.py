"""Reading without a group: ``read`` (for ``tail`` and the dashboard), end offsets and
offsets by time.

``read`` uses up to four group-less "reader" consumers per topic and event loop, each
assigned every partition; the reader whose next offsets equal the requested positions
is reused (a tail reading on from where it stopped fetches without seeking), else the
idlest one is seeked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from afterward.events._records import StoredEvent
from afterward.events.backends._driver import DriverErrors
from afterward.events.backends.kafka._clients import Conn, KafkaClients, Reader, start

__all__ = ["LogReader"]

_READERS_PER_TOPIC = 4


class LogReader:
    """The group-less reads of one bus.

    Args:
        clients: the bus's clients.
        errors: translates aiokafka's errors.
        acknowledged: per partition of a topic, the end offsets its produce rounds were
            acknowledged with (a lower bound of the ends, see :meth:`end_offsets`).
    """

    def __init__(
        self,
        clients: KafkaClients,
        errors: DriverErrors,
        acknowledged: Callable[[str], Mapping[int, int]],
    ) -> None:
        self._clients = clients
        self._settings = clients.settings
        self._errors = errors
        self._acknowledged = acknowledged

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        """Up to ``limit`` events of ``topic`` at or after ``positions``."""
        count = await self._clients.partition_count(topic, create=False)
        if not count:
            return []
        conn = await self._clients.conn()
        want = {p: positions.get(p, 0) for p in range(count)}
        name = self._settings.topic(topic)
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
                events.append(stored_of(topic, tp.partition, message))
            if messages:
                reader.next[tp.partition] = messages[-1].offset + 1
        return events

    async def _reader(self, conn: Conn, topic: str, want: dict[int, int]) -> Reader:
        readers = conn.readers.setdefault(topic, [])
        for reader in readers:
            if reader.next == want:
                return reader
        if len(readers) < _READERS_PER_TOPIC:
            consumer = AIOKafkaConsumer(
                **self._settings.client_options(
                    enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100
                )
            )
            await start(consumer, conn)
            readers.append(Reader(consumer))
            return readers[-1]
        return min(readers, key=lambda r: r.used)

    async def _behind(self, topic: str, want: Mapping[int, int], reader: Any) -> bool:
        name = self._settings.topic(topic)
        marks = [reader.highwater(TopicPartition(name, p)) for p in want]
        if all(mark is not None for mark in marks):
            return any(mark > want[p] for p, mark in zip(want, marks, strict=True))
        ends = await self.end_offsets(topic)
        return any(end > want.get(p, 0) for p, end in ends.items())

    async def _every_partition(self, topic: str) -> tuple[Conn, list[TopicPartition]]:
        """This loop's clients and every partition of ``topic`` (none if it is unknown)."""
        count = await self._clients.partition_count(topic, create=False)
        conn = await self._clients.conn()
        return conn, [TopicPartition(self._settings.topic(topic), p) for p in range(count)]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``, the offset the next event will get."""
        conn, tps = await self._every_partition(topic)
        if not tps:
            return {}
        async with self._errors(f"reading the end of {topic!r}"):
            ends = await conn.meta.end_offsets(tps)
        result = {tp.partition: offset for tp, offset in ends.items()}
        for partition, end in self._acknowledged(topic).items():
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
        """Per partition, the first offset with a timestamp at or after ``since``."""
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
        consumer = AIOKafkaConsumer(**self._settings.client_options(enable_auto_commit=False))
        async with self._errors(f"searching {topic!r} by time"):
            await start(consumer, None)
            try:
                tps = {p: TopicPartition(self._settings.topic(topic), p) for p in pending}
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


def stored_of(topic: str, partition: int, message: Any) -> StoredEvent:
    """The record a consumer fetched, as the bus reads it."""
    key = message.key
    if key is not None:
        try:
            key = key.decode()
        except UnicodeDecodeError:
            pass  # a foreign producer's binary key stays bytes
    return StoredEvent(
        topic,
        partition,
        message.offset,
        message.value if message.value is not None else b"",
        tuple(message.headers or ()),
        key,
        message.timestamp / 1000 if message.timestamp is not None else None,
    )


def _occurred_at(message: Any) -> float:
    """A record's event time: ``ce_time`` to the microsecond, else Kafka's timestamp
    (milliseconds)."""
    for name, value in message.headers or ():
        if name == "ce_time":
            try:
                return datetime.fromisoformat(value.decode()).timestamp()
            except ValueError:
                break
    return float(message.timestamp) / 1000
