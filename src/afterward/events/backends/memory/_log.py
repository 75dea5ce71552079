"""The memory backend's log, state and flows (:class:`MemoryLog`) and the store it
shares with the work queue (:mod:`._queue`)."""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from afterward.events._protocols import ConnectContext
from afterward.events._records import (
    AppendRecord,
    Attempt,
    Done,
    Pruned,
    QueuedJob,
    StoredDeadLetter,
    StoredEvent,
    StoredFailedJob,
    StoredSchema,
    TopicStorage,
)

__all__ = ["HISTORY_LIMIT", "JobEntry", "MemoryLog", "Store", "store_of", "stored_of"]

#: attempts a store keeps for ``history`` (the oldest go first).
HISTORY_LIMIT = 10_000


@dataclass
class JobEntry:
    """One job in the memory work queue, with where it is."""

    job: QueuedJob
    seq: int
    state: Literal["delayed", "ready", "running", "failed"]
    attempts: int = 0
    worker: str | None = None
    lease_until: float = 0.0
    failure: StoredFailedJob | None = None


@dataclass
class Store:
    """Everything one ``memory://`` URL holds."""

    logs: dict[str, list[AppendRecord]] = field(default_factory=dict)
    #: topic -> offset of ``logs[topic][0]`` (events before it were pruned)
    bases: dict[str, int] = field(default_factory=dict)
    positions: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    #: group -> event ID -> (topic, when it was recorded)
    processed: dict[str, dict[str, tuple[str, float]]] = field(default_factory=dict)
    #: (group, topic) -> key -> when its version was last raised
    version_times: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    versions: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    claims: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    dead: dict[str, StoredDeadLetter] = field(default_factory=dict)
    flows: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # cid -> (topic, off)
    attempts: deque[Attempt] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))
    jobs: dict[str, JobEntry] = field(default_factory=dict)  # the work queue, by job ID
    schemas: dict[str, list[StoredSchema]] = field(default_factory=dict)  # topic -> versions
    #: (group, topic) -> partition -> (start, end) of the batch being handled
    batches: dict[tuple[str, str], dict[int, tuple[int, int]]] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # (group, id) -> n
    cluster: str | None = None  # the log cluster this store serves as a state store for


_named: weakref.WeakValueDictionary[str, Store] = weakref.WeakValueDictionary()


def stored_of(record: AppendRecord, offset: int) -> StoredEvent:
    """What a read returns for ``record`` at ``offset``: the record as on the wire."""
    return StoredEvent(
        record.topic, 0, offset, record.value, record.headers, record.key, record.timestamp
    )


def store_of(url: str) -> Store:
    """The store of ``memory://NAME`` (shared while someone holds it), or a new private
    one for ``memory://``."""
    name = url.removeprefix("memory://").strip("/")
    store = _named.get(name) if name else None
    if store is None:
        store = Store()
        if name:
            _named[name] = store
    return store


class InStore(ConnectContext):
    """A part of the ``memory://`` backend: it reads and writes one :class:`Store`,
    with nothing to open or close."""

    scheme = "memory"

    def __init__(self, store: Store) -> None:
        self._store = store

    async def connect(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class MemoryLog(InStore):
    """An event log in this process's memory. See the module docstring."""

    # -- the log ----------------------------------------------------------------------

    def records(self, topic: str) -> list[tuple[int, AppendRecord]]:
        """Every stored record of ``topic`` with its offset (for the test kit)."""
        base = self._store.bases.get(topic, 0)
        return [(base + i, r) for i, r in enumerate(self._store.logs.get(topic, []))]

    async def append(self, records: Sequence[AppendRecord]) -> None:
        for record in records:
            log = self._store.logs.setdefault(record.topic, [])
            offset = self._store.bases.get(record.topic, 0) + len(log)
            if record.correlation_id is not None:
                flow = self._store.flows.setdefault(record.correlation_id, [])
                flow.append((record.topic, offset))
            log.append(record)

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        log = self._store.logs.get(topic, [])
        base = self._store.bases.get(topic, 0)
        start = max(positions.get(0, 0), base)
        end = min(base + len(log), start + limit)
        return [stored_of(log[offset - base], offset) for offset in range(start, end)]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        log = self._store.logs.get(topic)
        return {} if log is None else {0: self._store.bases.get(topic, 0) + len(log)}

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        # Not a bisect: timestamps need not ascend with offsets (publishers on several
        # threads, a clock stepping back, dead letters handed back to the topic).
        at = since.timestamp()
        found = self.records(topic)
        end = (await self.end_offsets(topic)).get(0, 0)
        return {0: next((o for o, r in found if r.timestamp >= at), end)}

    # -- retention (PrunableLog) --------------------------------------------------------

    async def topics(self) -> list[str]:
        return sorted(t for t, log in self._store.logs.items() if log)

    async def prune(self, topic: str, before: float, limit: int) -> int:
        log = self._store.logs.get(topic, [])
        count = 0
        while count < limit and len(log) > 1 and log[0].timestamp < before:
            log.pop(0)  # the newest stays: the next offset follows it
            count += 1
        self._store.bases[topic] = self._store.bases.get(topic, 0) + count
        return count

    async def first_offsets(self, topic: str) -> dict[int, int]:
        return {0: self._store.bases.get(topic, 0)} if topic in self._store.logs else {}

    async def storage(self) -> dict[str, TopicStorage]:
        found = {}
        for topic, log in sorted(self._store.logs.items()):
            size = sum(len(r.value) + sum(len(n) + len(v) for n, v in r.headers) for r in log)
            oldest = min((r.event.occurred_at for r in log), default=None)
            found[topic] = TopicStorage(len(log), size, oldest)
        return found

    # -- groups -----------------------------------------------------------------------

    async def positions(self, group: str, topic: str) -> dict[int, int] | None:
        found = self._store.positions.get((group, topic))
        return None if found is None else dict(found)

    async def every_position(self) -> dict[tuple[str, str], dict[int, int]]:
        return {pair: dict(found) for pair, found in self._store.positions.items()}

    async def register(self, group: str, topic: str, positions: Mapping[int, int]) -> None:
        self._store.positions.setdefault((group, topic), dict(positions))

    async def groups(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for group, topic in self._store.positions:
            found.setdefault(group, []).append(topic)
        return found

    async def claim(self, group: str, topic: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        holder = self._store.claims.get((group, topic))
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        self._store.claims[(group, topic)] = (owner, now + ttl)
        return True

    async def release(self, group: str, topic: str, owner: str) -> None:
        holder = self._store.claims.get((group, topic))
        if holder is not None and holder[0] == owner:
            del self._store.claims[(group, topic)]

    async def commit(
        self, group: str, topic: str, positions: Mapping[int, int], done: Sequence[Done]
    ) -> None:
        self._store.positions.setdefault((group, topic), {}).update(positions)
        processed = self._store.processed.setdefault(group, {})
        versions = self._store.versions.setdefault((group, topic), {})
        times = self._store.version_times.setdefault((group, topic), {})
        now = time.time()
        for item in done:
            if item.processed:
                processed[item.event_id] = (topic, now)
            if item.key is not None and item.version is not None:
                versions[item.key] = max(item.version, versions.get(item.key, item.version))
                times[item.key] = now

    async def processed(self, group: str, event_ids: Sequence[str]) -> set[str]:
        processed = self._store.processed.get(group, {})
        return {event_id for event_id in event_ids if event_id in processed}

    async def key_versions(self, group: str, topic: str, keys: Sequence[str]) -> dict[str, int]:
        versions = self._store.versions.get((group, topic), {})
        return {key: versions[key] for key in keys if key in versions}

    async def rewind(
        self, group: str, topic: str, positions: Mapping[int, int], *, forget: bool
    ) -> None:
        self._store.positions.setdefault((group, topic), {}).update(positions)
        if forget:
            processed = self._store.processed.get(group, {})
            for event_id in [i for i, (t, _) in processed.items() if t == topic]:
                del processed[event_id]
            self._store.versions.pop((group, topic), None)

    async def begin_batch(
        self, group: str, topic: str, spans: Mapping[int, tuple[int, int]]
    ) -> dict[int, int]:
        marks = self._store.batches.setdefault((group, topic), {})
        redelivered: dict[int, int] = {}
        for partition, (start, end) in spans.items():
            earlier = marks.get(partition)
            if earlier is not None and earlier[0] <= start < earlier[1]:
                redelivered[partition] = earlier[1]
            else:
                marks[partition] = (start, end)
        return redelivered

    async def bind_cluster(self, cluster_id: str) -> str:
        if self._store.cluster is None:
            self._store.cluster = cluster_id
        return self._store.cluster

    async def count_attempt(self, group: str, topic: str, event_id: str) -> int:
        key = (group, event_id)
        self._store.deliveries[key] = count = self._store.deliveries.get(key, 0) + 1
        return count

    # -- dead letters -----------------------------------------------------------------

    async def add_dead_letter(self, letter: StoredDeadLetter) -> None:
        self._store.dead[letter.id] = letter

    async def dead_letters(self, group: str | None) -> list[StoredDeadLetter]:
        return [d for d in self._store.dead.values() if group is None or d.group == group]

    async def dead_letter(self, letter_id: str) -> StoredDeadLetter | None:
        return self._store.dead.get(letter_id)

    async def update_dead_letter(self, letter: StoredDeadLetter) -> None:
        self._store.dead[letter.id] = letter

    async def delete_dead_letter(self, letter_id: str) -> bool:
        return self._store.dead.pop(letter_id, None) is not None

    # -- flows (the optional FlowLog capability) --------------------------------------

    async def events_for(self, correlation_id: str, limit: int) -> Sequence[StoredEvent]:
        found: list[StoredEvent] = []
        for topic, offset in self._store.flows.get(correlation_id, []):
            index = offset - self._store.bases.get(topic, 0)
            if index >= 0 and len(found) < limit:  # else pruned
                found.append(stored_of(self._store.logs[topic][index], offset))
        return found

    # -- retention (PrunableState) ------------------------------------------------------

    async def prune_state(self, before: float, limit: int) -> Pruned:
        processed = versions = 0
        for ids in self._store.processed.values():
            old = [i for i, (_, at) in ids.items() if at < before][: limit - processed]
            for event_id in old:
                del ids[event_id]
            processed += len(old)
        for pair, times in self._store.version_times.items():
            old = [k for k, at in times.items() if at < before][: limit - versions]
            for key in old:
                del times[key]
                self._store.versions.get(pair, {}).pop(key, None)
            versions += len(old)
        history = 0
        while self._store.attempts and history < limit:
            if self._store.attempts[0].at.timestamp() >= before:
                break
            self._store.attempts.popleft()
            history += 1
        for cid in list(self._store.flows):
            kept = [(t, o) for t, o in self._store.flows[cid] if o >= self._store.bases.get(t, 0)]
            if kept:
                self._store.flows[cid] = kept
            else:
                del self._store.flows[cid]
        return Pruned(0, processed, versions, history)

    async def add_attempts(self, attempts: Sequence[Attempt]) -> None:
        self._store.attempts.extend(attempts)

    async def attempts_for(self, correlation_id: str, limit: int) -> list[Attempt]:
        found = [a for a in self._store.attempts if a.correlation_id == correlation_id]
        return found[:limit]

    # -- the schema registry (SchemaStore) --------------------------------------------

    async def schemas(self, topic: str | None) -> list[StoredSchema]:
        if topic is not None:
            return list(self._store.schemas.get(topic, []))
        return [s for name in sorted(self._store.schemas) for s in self._store.schemas[name]]

    async def add_schema(self, schema: StoredSchema) -> bool:
        versions = self._store.schemas.setdefault(schema.topic, [])
        if schema.version != len(versions) + 1:
            return False
        versions.append(schema)
        return True
