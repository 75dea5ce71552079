"""The ``sqlite://`` backend: :class:`SQLiteLog`, one file, every capability but groups.

Each primitive is one SQL function (:mod:`._events`, :mod:`._groups`) run on the file's
thread by :class:`~._db.SQLiteFile` (writes in a transaction, grouped with the writes
queued beside them).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime

from afterward.events._protocols import ConnectContext
from afterward.events._records import (
    AppendRecord,
    Attempt,
    Done,
    Pruned,
    StoredDeadLetter,
    StoredEvent,
    StoredSchema,
    TopicStorage,
)
from afterward.events.backends.sqlite import _events, _groups, _schemas
from afterward.events.backends.sqlite._db import SQLiteFile, path_of
from afterward.events.backends.sqlite._jobs import JOBS_SCHEMA
from afterward.events.backends.sqlite._migrate import migrate
from afterward.events.backends.sqlite._schema import SCHEMA

__all__ = ["SQLiteLog"]

_call = functools.partial


class SQLiteLog(ConnectContext):
    """An event log, its state and its flows in one SQLite file (see the package doc).

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.
    """

    scheme = "sqlite"

    def __init__(self, url: str = "sqlite:///afterward.db") -> None:
        self.path = path_of(url)
        #: The file and its thread (shared with the work queue).
        schema = SCHEMA + JOBS_SCHEMA + _schemas.SCHEMAS_SCHEMA
        self.db = SQLiteFile(self.path, schema, migrate)

    def __repr__(self) -> str:
        return f"<SQLiteLog {str(self.path)!r}>"

    async def connect(self) -> None:
        await self.db.connect()

    async def aclose(self) -> None:
        await self.db.aclose()

    # -- the log ----------------------------------------------------------------------

    async def append(self, records: Sequence[AppendRecord]) -> None:
        # Coalesced with the appends of this loop iteration, without a thread hop.
        await self.db.write(_call(_events.append, records=records))

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        start = positions.get(0, 0)
        return await self.db.run(_call(_events.read, topic=topic, start=start, limit=limit))

    async def end_offsets(self, topic: str) -> dict[int, int]:
        return await self.db.run(_call(_events.end_offsets, topic=topic))

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        return await self.db.run(_call(_events.offsets_for_time, topic=topic, since=since))

    # -- groups -----------------------------------------------------------------------

    async def positions(self, group: str, topic: str) -> dict[int, int] | None:
        return await self.db.run(_call(_groups.positions, group=group, topic=topic))

    async def every_position(self) -> dict[tuple[str, str], dict[int, int]]:
        return await self.db.run(_groups.every_position)

    async def register(self, group: str, topic: str, positions: Mapping[int, int]) -> None:
        await self.db.run(
            _call(_groups.register, group=group, topic=topic, start=positions), write=True
        )

    async def groups(self) -> dict[str, list[str]]:
        return await self.db.run(_groups.groups)

    async def claim(self, group: str, topic: str, owner: str, ttl: float) -> bool:
        return await self.db.run(
            _call(_groups.claim, group=group, topic=topic, owner=owner, ttl=ttl), write=True
        )

    async def release(self, group: str, topic: str, owner: str) -> None:
        await self.db.run(_call(_groups.release, group=group, topic=topic, owner=owner), write=True)

    async def commit(
        self, group: str, topic: str, positions: Mapping[int, int], done: Sequence[Done]
    ) -> None:
        await self.db.run(
            _call(_groups.commit, group=group, topic=topic, moved=positions, done=done),
            write=True,
        )

    async def processed(self, group: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        return await self.db.run(_call(_groups.processed, group=group, event_ids=event_ids))

    async def key_versions(self, group: str, topic: str, keys: Sequence[str]) -> dict[str, int]:
        if not keys:
            return {}
        return await self.db.run(_call(_groups.key_versions, group=group, topic=topic, keys=keys))

    async def rewind(
        self, group: str, topic: str, positions: Mapping[int, int], *, forget: bool
    ) -> None:
        await self.db.run(
            _call(_groups.rewind, group=group, topic=topic, moved=positions, forget=forget),
            write=True,
        )

    async def begin_batch(
        self, group: str, topic: str, spans: Mapping[int, tuple[int, int]]
    ) -> dict[int, int]:
        return await self.db.run(
            _call(_groups.begin_batch, group=group, topic=topic, spans=spans), write=True
        )

    async def bind_cluster(self, cluster_id: str) -> str:
        return await self.db.run(_call(_groups.bind_cluster, cluster_id=cluster_id), write=True)

    async def count_attempt(self, group: str, topic: str, event_id: str) -> int:
        return await self.db.run(
            _call(_groups.count_attempt, group=group, event_id=event_id), write=True
        )

    # -- dead letters -----------------------------------------------------------------

    async def add_dead_letter(self, letter: StoredDeadLetter) -> None:
        await self.db.run(_call(_groups.store_dead_letter, letter=letter), write=True)

    async def dead_letters(self, group: str | None) -> list[StoredDeadLetter]:
        return await self.db.run(_call(_groups.dead_letters, group=group))

    async def dead_letter(self, letter_id: str) -> StoredDeadLetter | None:
        return await self.db.run(_call(_groups.dead_letter, letter_id=letter_id))

    async def update_dead_letter(self, letter: StoredDeadLetter) -> None:
        await self.db.run(_call(_groups.store_dead_letter, letter=letter), write=True)

    async def delete_dead_letter(self, letter_id: str) -> bool:
        return await self.db.run(_call(_groups.delete_dead_letter, letter_id=letter_id), write=True)

    # -- flows (the optional FlowLog capability) --------------------------------------

    async def events_for(self, correlation_id: str, limit: int) -> Sequence[StoredEvent]:
        return await self.db.run(
            _call(_events.events_for, correlation_id=correlation_id, limit=limit)
        )

    async def add_attempts(self, attempts: Sequence[Attempt]) -> None:
        await self.db.write(_call(_events.add_attempts, attempts=attempts))

    async def attempts_for(self, correlation_id: str, limit: int) -> list[Attempt]:
        return await self.db.run(
            _call(_events.attempts_for, correlation_id=correlation_id, limit=limit)
        )

    # -- the schema registry (SchemaStore) --------------------------------------------

    async def schemas(self, topic: str | None) -> list[StoredSchema]:
        return await self.db.run(_call(_schemas.schemas, topic=topic))

    async def add_schema(self, schema: StoredSchema) -> bool:
        return await self.db.run(_call(_schemas.add_schema, schema=schema), write=True)

    # -- retention (PrunableLog, PrunableState) ---------------------------------------

    async def topics(self) -> list[str]:
        return await self.db.run(_events.topics)

    async def prune(self, topic: str, before: float, limit: int) -> int:
        return await self.db.run(
            _call(_events.prune, topic=topic, before=before, limit=limit), write=True
        )

    async def first_offsets(self, topic: str) -> dict[int, int]:
        return await self.db.run(_call(_events.first_offsets, topic=topic))

    async def storage(self) -> dict[str, TopicStorage]:
        return await self.db.run(_events.storage)

    async def prune_state(self, before: float, limit: int) -> Pruned:
        return await self.db.run(_call(_groups.prune_state, before=before, limit=limit), write=True)

    async def checkpoint(self) -> None:
        """Fold the write-ahead log back into the file (after pruning): a passive
        checkpoint, so it never waits for readers."""
        await self.db.run(lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)"))
