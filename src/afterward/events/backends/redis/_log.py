""":class:`RedisLog`: the log, the group state, claims and dead letters on Redis.

Layout and semantics are described in :mod:`afterward.events.backends.redis`; the keys
and value encodings are in ``_codec.py``, the Lua in ``scripts/``, the consumer group
member in ``_member.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from afterward.events._protocols import ConnectContext, Member
from afterward.events._records import (
    AppendRecord,
    Done,
    StoredDeadLetter,
    StoredEvent,
    StoredSchema,
)
from afterward.events.backends.redis import _codec, _scripts
from afterward.events.backends.redis._client import RedisClients
from afterward.events.backends.redis._member import RedisMember
from afterward.events.backends.redis._retention import RedisRetention, end_offset, first_at

__all__ = ["RedisLog"]

#: Keys per HMGET of key versions: bounded requests and replies for large batches.
_CHUNK = 1000


class RedisLog(ConnectContext, RedisRetention):
    """An event log on Redis Streams, its own state store and a ``GroupLog``, pruned
    by retention (:mod:`._retention`). See :mod:`afterward.events.backends.redis`.

    Args:
        url: ``redis://[user:password@]host:port/db[?prefix=...]`` (``rediss://`` for
            TLS); other query parameters go to redis-py.

    Attributes:
        url: the bus URL.
        prefix: the key prefix.
        clients: its redis-py clients (the work queue shares them).

    Raises:
        ConfigError: redis-py rejects the URL.
    """

    scheme = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        self.url = url
        self._clients = self.clients = RedisClients(url)
        self._keys = self._clients.keys
        self._errors = self._clients.errors
        self.prefix = self._keys.prefix

    async def connect(self) -> None:
        """Check that the server answers (clients connect lazily, per event loop)."""
        async with self._errors("connecting"):
            await self._clients.get().ping()

    async def aclose(self) -> None:
        """Close every event loop's client, each on its own loop."""
        await self._clients.aclose()

    # -- the log ----------------------------------------------------------------------

    async def append(self, records: Sequence[AppendRecord]) -> None:
        """Append ``records``: one ``XADD``, or ``append.lua`` for several (all or none)."""
        if not records:
            return
        if len(records) == 1:  # one command is atomic: no script needed
            record = records[0]
            fields: Any = dict(_codec.entry_fields(record))  # names are unique: ce_*, headers
            stream = self._keys.stream(record.topic)
            async with self._errors("appending"):
                await self._clients.adopting(
                    [stream], lambda: self._clients.get().xadd(stream, fields, id="0-*")
                )
            return
        streams: dict[str, int] = {}
        args: list[Any] = []
        for record in records:
            index = streams.setdefault(self._keys.stream(record.topic), len(streams) + 1)
            fields = _codec.entry_fields(record)
            args += [index, len(fields)]
            for name, value in fields:
                args += [name, value]
        async with self._errors("appending"):
            await self._clients.adopting(
                streams, lambda: self._clients.script(_scripts.APPEND, list(streams), args)
            )

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        """Up to ``limit`` events from the position (``XRANGE``: no consumer group)."""
        start = _codec.stream_id(positions.get(0, 0))
        stream = self._keys.stream(topic)
        async with self._errors(f"reading {topic!r}"):
            client = self._clients.get()
            entries: Any = await client.xrange(stream, min=start, count=limit)
            if entries and not _codec.dense(entries[-1][0]):  # another client's XADD *
                await self._clients.adopt(stream)
                entries = await client.xrange(stream, min=start, count=limit)
        return [_codec.event(topic, entry_id, fields) for entry_id, fields in entries]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """``{0: the newest entry's offset + 1}``; ``{}`` when the stream does not exist."""
        # Not XLEN: retention trims the oldest entries, and offsets go on after them.
        async with self._errors(f"reading the end of {topic!r}"):
            end = await end_offset(self._clients.get(), self._keys.stream(topic))
        return {} if end is None else {0: end}

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        """The first offset at or after ``since``, by binary search."""
        # Offsets are dense from the oldest kept, so a binary search of single-entry
        # XRANGEs finds the first event at or after ``since`` in O(log n) round trips.
        start = (await self.first_offsets(topic)).get(0, 0)
        end = (await self.end_offsets(topic)).get(0, 0)
        async with self._errors(f"searching {topic!r} by time"):
            found = await first_at(
                self._clients.get(), self._keys.stream(topic), since.timestamp(), start, end
            )
        return {0: found}

    # -- groups -----------------------------------------------------------------------

    async def positions(self, group: str, topic: str) -> dict[int, int] | None:
        """The ``pos:<topic>:<group>`` hash, ``None`` when missing."""
        async with self._errors(f"reading positions of {group!r}"):
            found = await self._clients.get().hgetall(self._keys.pos(topic, group))
        return _codec.positions(found)

    async def register(self, group: str, topic: str, positions: Mapping[int, int]) -> None:
        """Create the group's positions (offset 0 when none are given) if missing."""
        args = [_codec.registration(group, topic), *_codec.pairs(dict(positions) or {0: 0})]
        keys = [self._keys.pos(topic, group), self._keys.groups]
        async with self._errors(f"registering {group!r}"):
            await self._clients.script(_scripts.REGISTER, keys, args)

    async def groups(self) -> dict[str, list[str]]:
        """Every registered group and its topics, sorted."""
        async with self._errors("listing groups"):
            members = await self._clients.get().smembers(self._keys.groups)
        return _codec.registered(members)

    async def every_position(self) -> dict[tuple[str, str], dict[int, int]]:
        """Every registered group's ``pos:`` hash, read in one pipelined round trip."""
        pairs = [(g, t) for g, topics in (await self.groups()).items() for t in topics]
        async with self._errors("reading every group's positions"):
            pipe = self._clients.get().pipeline(transaction=False)
            for group, topic in pairs:
                pipe.hgetall(self._keys.pos(topic, group))
            found = await pipe.execute()
        read = {pair: _codec.positions(hashed) for pair, hashed in zip(pairs, found, strict=True)}
        return {pair: positions for pair, positions in read.items() if positions is not None}

    async def claim(self, group: str, topic: str, owner: str, ttl: float) -> bool:
        """Hold ``claim:<topic>:<group>`` for ``ttl`` seconds if free or ``owner``'s."""
        return bool(await self._claim(group, topic, owner, ttl))

    async def _claim(self, group: str, topic: str, owner: str, ttl: float) -> int:
        """A :class:`~afterward.events._lease.Held` code: 0 held by another, 1 renewed,
        2 taken afresh (nobody held it, not even ``owner``: whatever happened meanwhile
        needs a takeover)."""
        async with self._errors(f"claiming {group!r}"):
            held = await self._clients.script(
                _scripts.CLAIM, [self._keys.claim(topic, group)], [owner, max(1, int(ttl * 1000))]
            )
        return int(held)

    async def release(self, group: str, topic: str, owner: str) -> None:
        """Delete the claim if ``owner`` holds it."""
        async with self._errors(f"releasing {group!r}"):
            await self._clients.script(_scripts.RELEASE, [self._keys.claim(topic, group)], [owner])

    async def commit(
        self, group: str, topic: str, positions: Mapping[int, int], done: Sequence[Done]
    ) -> None:
        """Set positions, record processed IDs and raise versions (``commit.lua``)."""
        # Positions only: the consumer group follows members' commits and rewinds (the
        # bus commits this way only for a dead-letter retry, without positions).
        args = [topic, _codec.done_json(done), *_codec.pairs(positions)]
        async with self._errors(f"committing {group!r}"):
            await self._clients.script(_scripts.COMMIT, self._keys.state(group, topic), args)

    async def processed(self, group: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` are in ``done:<group>`` (``processed.lua``)."""
        if not event_ids:
            return set()
        ids = list(event_ids)
        async with self._errors(f"reading processed IDs of {group!r}"):
            found = await self._clients.script(
                _scripts.PROCESSED, [self._keys.done(group)], [_codec.json_list(ids)]
            )
        return {ids[i - 1] for i in found}

    async def key_versions(self, group: str, topic: str, keys: Sequence[str]) -> dict[str, int]:
        """The highest handled version of each known key (``HMGET`` in chunks)."""
        found: dict[str, int] = {}
        async with self._errors(f"reading key versions of {group!r}"):
            client = self._clients.get()
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                values = await client.hmget(self._keys.ver(topic, group), chunk)
                found.update((k, int(v)) for k, v in zip(chunk, values, strict=True) if v)
        return found

    async def rewind(
        self, group: str, topic: str, positions: Mapping[int, int], *, forget: bool
    ) -> None:
        """Move the positions and the consumer group, drop its pending entries
        (``rewind.lua``); with ``forget``, also the topic's processed IDs and versions."""
        args = [topic, "1" if forget else "0", group, *_codec.pairs(positions)]
        keys = [*self._keys.state(group, topic), self._keys.stream(topic)]
        async with self._errors(f"rewinding {group!r}"):
            await self._clients.script(_scripts.REWIND, keys, args)

    # -- consumer groups (GroupLog) ---------------------------------------------------

    async def begin_batch(
        self, group: str, topic: str, spans: Mapping[int, tuple[int, int]]
    ) -> dict[int, int]:
        """The ``begin_batch`` script on ``batches:<topic>:<group>``."""
        args: list[Any] = []
        for partition, (start, end) in spans.items():
            args += [partition, start, end]
        async with self._errors(f"starting a batch of {group!r}"):
            flat = await self._clients.script(
                _scripts.BEGIN_BATCH, [self._keys.batches(topic, group)], args
            )
        return {int(p): int(e) for p, e in zip(flat[::2], flat[1::2], strict=True)}

    async def bind_cluster(self, cluster_id: str) -> str:
        """``SET cluster <id> NX``, then the stored one."""
        key = self._keys.prefix + "cluster"
        async with self._errors("checking the store's cluster"):
            client = self._clients.get()
            await client.set(key, cluster_id, nx=True)
            stored: Any = await client.get(key)
        return str(stored.decode())

    async def count_attempt(self, group: str, topic: str, event_id: str) -> int:
        """``HINCRBY deliveries:<group> <event id> 1``."""
        async with self._errors(f"counting a delivery for {group!r}"):
            return int(await self._clients.get().hincrby(self._keys.deliveries(group), event_id, 1))

    # -- the schema registry (SchemaStore) --------------------------------------------

    async def schemas(self, topic: str | None) -> list[StoredSchema]:
        """Every version of ``topic`` (of every topic in ``schema-topics`` when ``None``)."""
        async with self._errors("reading schemas"):
            client = self._clients.get()
            if topic is not None:
                topics = [topic]
            else:
                members: Any = await client.smembers(self._keys.schema_topics)
                topics = sorted(m.decode() for m in members)
            found: list[StoredSchema] = []
            for name in topics:
                versions = await client.hgetall(self._keys.schemas(name))
                found += sorted(
                    (_codec.stored_schema(name, v, raw) for v, raw in versions.items()),
                    key=lambda s: s.version,
                )
        return found

    async def add_schema(self, schema: StoredSchema) -> bool:
        """The ``add_schema`` script: stored only as the topic's next version."""
        keys = [self._keys.schemas(schema.topic), self._keys.schema_topics]
        args = [schema.topic, schema.version, _codec.schema_json(schema)]
        async with self._errors(f"registering a schema for {schema.topic!r}"):
            return bool(await self._clients.script(_scripts.ADD_SCHEMA, keys, args))

    async def join(self, group: str, topic: str, claim_ttl: float) -> Member:
        """Become a member of ``group`` on ``topic``: see the package docstring.

        Joining costs no round trip; the member claims the group on its first ``fetch``
        and holds the claim for ``claim_ttl`` seconds past its last renewal.
        """

        async def claim(owner: str, ttl: float) -> int:
            return await self._claim(group, topic, owner, ttl)

        return RedisMember(self._clients, group, topic, claim_ttl, claim)

    # -- dead letters -----------------------------------------------------------------

    async def add_dead_letter(self, letter: StoredDeadLetter) -> None:
        """Store ``letter``: its hash and its place in ``dlq``."""
        await self.update_dead_letter(letter)

    async def dead_letters(self, group: str | None) -> list[StoredDeadLetter]:
        """Every dead letter (of ``group`` when given), oldest first."""
        async with self._errors("listing dead letters"):
            client = self._clients.get()
            ids: Any = await client.zrange(self._keys.dlq, 0, -1)
            async with client.pipeline(transaction=False) as pipe:
                for letter_id in ids:
                    pipe.hgetall(self._keys.letter(letter_id.decode()))
                rows = await pipe.execute()
        letters = [_codec.letter(row) for row in rows if row]
        return [x for x in letters if group is None or x.group == group]

    async def dead_letter(self, letter_id: str) -> StoredDeadLetter | None:
        """The dead letter with that ID, or ``None``."""
        async with self._errors("reading a dead letter"):
            row: Any = await self._clients.get().hgetall(self._keys.letter(letter_id))
        return _codec.letter(row) if row else None

    async def update_dead_letter(self, letter: StoredDeadLetter) -> None:
        """Write ``letter``'s hash and score in one transaction."""
        fields: Any = _codec.letter_fields(letter)
        async with self._errors("storing a dead letter"):
            async with self._clients.get().pipeline(transaction=True) as pipe:
                pipe.hset(self._keys.letter(letter.id), mapping=fields)
                pipe.zadd(self._keys.dlq, {letter.id: letter.failed_at.timestamp()})
                await pipe.execute()

    async def delete_dead_letter(self, letter_id: str) -> bool:
        """Delete the letter's hash and score; false when there was none."""
        async with self._errors("deleting a dead letter"):
            async with self._clients.get().pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.letter(letter_id))
                pipe.zrem(self._keys.dlq, letter_id)
                deleted, _ = await pipe.execute()
        return bool(deleted)
