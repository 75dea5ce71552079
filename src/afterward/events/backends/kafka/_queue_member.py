"""This process's member of one queue's worker group: :class:`QueueMember`.

The workers of queue ``q`` are the Kafka consumer group ``afterward.worker.q`` on the
queue topic ``afterward.jobs.q``: the broker shares the topic's partitions among the
worker processes and rebalances as they come and go. A record there names a job (its
key is the job ID); the job's state (attempts, lease, payload, failure) is in the
ledger (:mod:`._queue`).

A member keeps the records it read and has not settled, per partition in offset
order (*pending*, at most :data:`ROOM`): a job that is running stays pending until it
is done. The Kafka offset it commits for a partition is its first pending record (or
its position when none is), so whoever reads the partition next (after a rebalance, a
kill -9) reads again exactly the records of unfinished jobs, and the ledger says which
of those are still to run; a finished job is never run again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors

from afterward._exceptions import BackendError
from afterward.events.backends._driver import DriverErrors
from afterward.events.backends.kafka._member import start_member
from afterward.events.backends.kafka._settings import KafkaSettings

__all__ = ["COMMIT_EVERY", "JOB_TOPIC", "ROOM", "WORKER_GROUP", "QueueMember"]

logger = logging.getLogger("afterward.jobs")

#: The topic of queue ``q`` is ``afterward.jobs.q`` and its workers are the group
#: ``afterward.worker.q`` (the names the bus gives them, see ``events/_job_wire.py``).
JOB_TOPIC = "afterward.jobs."
WORKER_GROUP = "afterward.worker."
#: Records a member keeps pending at most: it reads no further until some settle.
ROOM = 1000
#: How long a reservation waits to read the records this process appended.
_CATCH_UP = 5.0
#: Seconds between offset commits while working (a rebalance and leaving commit at
#: once). A commit only saves the next reader re-reading finished jobs' records, which
#: the ledger skips: correctness does not depend on it, so not one per job.
COMMIT_EVERY = 1.0


class QueueMember(ConsumerRebalanceListener):  # type: ignore[misc]
    """The worker group member of ``queue`` in this process and event loop (see the
    module docstring). Call :meth:`start` first."""

    def __init__(self, settings: KafkaSettings, errors: DriverErrors, queue: str) -> None:
        self.queue = queue
        self.group = WORKER_GROUP + queue
        self.topic = settings.topic(JOB_TOPIC + queue)
        self._settings = settings
        self._errors = errors
        self._consumer: AIOKafkaConsumer | None = None
        #: partition -> offset -> job ID, in offset order.
        self._pending: dict[int, dict[int, str]] = {}
        self._committed: dict[int, int] = {}
        self._last_commit = 0.0

    async def start(self) -> None:
        """Join the group; returns once it assigned this member its partitions."""
        consumer = AIOKafkaConsumer(**self._settings.member_options(self.group))
        consumer.subscribe([self.topic], listener=self)
        self._consumer = consumer
        await start_member(consumer, self._settings, self._errors, self.group)

    def _held(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise BackendError("this Kafka worker group member is closed", backend="kafka")
        return self._consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The next owner starts at the first unfinished record of each partition.
        with contextlib.suppress(Exception):
            await self._commit({tp.partition for tp in revoked})
        for tp in revoked:
            self._pending.pop(tp.partition, None)
            self._committed.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None  # each starts at the group's committed offset (or the earliest)

    @property
    def count(self) -> int:
        """Records pending."""
        return sum(len(p) for p in self._pending.values())

    async def fetch(self, appended: Mapping[int, int]) -> None:
        """Read what the broker has for this member (up to :data:`ROOM` pending), and
        at least up to ``appended`` (per partition, the end of what this process
        appended) in the partitions it holds, waiting up to a few seconds for those."""
        consumer = self._held()
        deadline = time.monotonic() + _CATCH_UP
        wait = 0
        async with self._errors(f"reading the jobs of queue {self.queue!r}"):
            while (room := ROOM - self.count) > 0:
                batches = await consumer.getmany(timeout_ms=wait, max_records=room)
                assigned = consumer.assignment()
                for tp, messages in batches.items():
                    if tp in assigned:
                        pending = self._pending.setdefault(tp.partition, {})
                        pending.update((m.offset, m.key.decode()) for m in messages if m.key)
                if time.monotonic() > deadline or not await self._behind(consumer, appended):
                    return
                wait = 100

    async def _behind(self, consumer: AIOKafkaConsumer, appended: Mapping[int, int]) -> bool:
        try:
            for tp in consumer.assignment():
                end = appended.get(tp.partition)
                if end is not None and await consumer.position(tp) < end:
                    return True
        except kafka_errors.IllegalStateError:  # revoked meanwhile (a rebalance)
            return False
        return False

    def job_ids(self) -> list[str]:
        """The jobs of the pending records, each once, in offset order per partition."""
        return list(dict.fromkeys(i for p in self._pending.values() for i in p.values()))

    def settle(self, job_ids: Collection[str]) -> None:
        """Nothing more to do with these jobs here: forget their records."""
        if not job_ids:
            return
        for partition, pending in self._pending.items():
            self._pending[partition] = {o: i for o, i in pending.items() if i not in job_ids}

    async def commit(self, *, now: bool = False) -> None:
        """Commit, per partition held, the offset of its first unsettled record (at
        most every :data:`COMMIT_EVERY` seconds, unless ``now``)."""
        if not now and time.monotonic() - self._last_commit < COMMIT_EVERY:
            return
        self._last_commit = time.monotonic()
        await self._commit(tp.partition for tp in self._held().assignment())

    async def _commit(self, partitions: Iterable[int]) -> None:
        consumer = self._held()
        offsets = {}
        try:
            for partition in partitions:
                tp = TopicPartition(self.topic, partition)
                pending = self._pending.get(partition)
                low = next(iter(pending)) if pending else await consumer.position(tp)
                if self._committed.get(partition) != low:
                    offsets[tp] = low
            if offsets:
                await consumer.commit(offsets)
        except (kafka_errors.KafkaError, OSError) as exc:  # a rebalance: the next one goes
            logger.info("queue %r: Kafka offsets not committed (%r)", self.queue, exc)
            return
        self._committed.update({tp.partition: o for tp, o in offsets.items()})

    async def close(self) -> None:
        """Commit, then leave the group (its partitions go to the other workers now)."""
        consumer = self._consumer
        if consumer is None:
            return
        with contextlib.suppress(Exception):
            await self.commit(now=True)
        self._consumer = None
        with contextlib.suppress(Exception):
            await consumer.stop()
