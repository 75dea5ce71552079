"""A member of a Kafka consumer group: the :class:`~afterward.events._protocols.Member`
of :meth:`KafkaLog.join <afterward.events.backends.kafka.KafkaLog.join>`.

The state store's positions are the group's: a member starts each partition it is
assigned there, and commits a batch's positions, processed IDs and versions to the
store in one write. The same offsets then go to the Kafka group in the background,
for Kafka's own tools (``kafka-consumer-groups --describe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors

from afterward._exceptions import BackendError
from afterward.events._protocols import StateStore
from afterward.events._records import Done, StoredEvent
from afterward.events.backends._driver import DriverErrors
from afterward.events.backends.kafka._clients import start
from afterward.events.backends.kafka._reader import stored_of
from afterward.events.backends.kafka._settings import KafkaSettings

__all__ = ["KafkaMember", "join", "start_member"]

logger = logging.getLogger("afterward.events")


async def join(
    settings: KafkaSettings, store: StateStore, errors: DriverErrors, group: str, topic: str
) -> KafkaMember:
    """Join the Kafka consumer group ``group`` on ``topic``; returns once the group has
    assigned the member its partitions (bounded by twice the JoinGroup request timeout).

    Raises:
        BackendError: the join did not complete in time, or starting the assigned
            partitions at the store's positions failed.
    """
    member = KafkaMember(settings, store, errors, group, topic)
    consumer = member.consumer = AIOKafkaConsumer(**settings.member_options(group))
    consumer.subscribe([settings.topic(topic)], listener=member)
    await start_member(consumer, settings, errors, group)
    member.raise_failure()
    return member


async def start_member(
    consumer: AIOKafkaConsumer, settings: KafkaSettings, errors: DriverErrors, group: str
) -> None:
    """Start the consumer of a member of ``group``; returns once the group has assigned
    it its partitions (bounded by twice the JoinGroup request timeout).

    Raises:
        BackendError: the join did not complete in time.
    """
    request_ms = settings.join_request_ms
    try:
        # The deadline outside the error translation: a slow join is this group's
        # problem, not an outage (TimeoutError is an OSError, which would count as one
        # and close the loop's producer under its publishes).
        async with asyncio.timeout(2 * request_ms / 1000):
            async with errors(f"joining group {group!r}"):
                # start() returns once the group assigned this member its partitions.
                await start(consumer, None)
    except TimeoutError as exc:
        raise BackendError(
            f"Kafka group {group!r} did not complete a join within {2 * request_ms} ms",
            backend="kafka",
        ) from exc


class KafkaMember(ConsumerRebalanceListener):  # type: ignore[misc]
    """A member of a Kafka consumer group (see :func:`join`).

    Rebalance safety: when the broker takes partitions away, ``on_partitions_revoked``
    waits for the batch in flight to be handled and committed before the group moves
    on, so the next owner starts after it; a member that died mid-batch (kill -9)
    committed nothing of that batch, and its next owner skips the IDs the state store
    already has.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        store: StateStore,
        errors: DriverErrors,
        group: str,
        topic: str,
    ) -> None:
        self.group = group
        self.topic = topic
        self.name = settings.topic(topic)
        self.consumer: AIOKafkaConsumer | None = None
        self._store = store
        self._errors = errors
        self._close_wait = min(5.0, settings.request_timeout_ms / 1000)
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
            positions = await self._store.positions(self.group, self.topic) or {}
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
        """Up to ``limit`` events of this member's partitions, waiting up to ``timeout``."""
        consumer = self._consumer()
        self.raise_failure()
        async with self._errors(f"reading {self.topic!r} for group {self.group!r}"):
            batches = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=limit)
            if not batches and await self._behind(consumer):
                # Assigned, data there, not fetched yet (the first fetch): wait for it.
                batches = await consumer.getmany(timeout_ms=2000, max_records=limit)
        events = [
            stored_of(self.topic, tp.partition, m)
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
        """Commit the batch to the state store, then (in the background) to Kafka."""
        consumer = self._consumer()
        try:
            await self._store.commit(self.group, self.topic, positions, done)
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
        """Leave the group (after the last offsets reach Kafka, unless it is gone)."""
        consumer, self.consumer = self.consumer, None
        self._idle.set()
        if consumer is not None:
            if self._mirror is not None:
                await asyncio.wait({self._mirror}, timeout=self._close_wait)
                self._mirror.cancel()
                # Its own cancellation comes back as a result; a cancellation of close()
                # itself still propagates.
                await asyncio.gather(self._mirror, return_exceptions=True)
            with contextlib.suppress(Exception):
                await consumer.stop()
