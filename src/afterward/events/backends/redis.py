"""``redis://host:port/db?prefix=afterward:``: the bus on Redis Streams (``afterward[redis]``).

Layout, every key under ``prefix`` (default ``afterward:``), so one Redis can hold many
buses and nothing outside the prefix is touched:

- ``stream:<topic>``: the topic's log, one stream (one partition). Entry IDs are dense,
  ``0-<offset + 1>`` (appended as ``0-*``: Redis numbers them), so an offset maps to a
  stream ID without an index, ``XRANGE`` reads from any position (``tail``,
  ``offsets_for_time``) and ``XLEN`` is the end offset (entries are never deleted);
  fields ``id``, ``ts``, ``payload``. Each afterward group consuming the topic is a Redis
  consumer group of that stream, named like the group (``XINFO GROUPS`` shows it).
- ``pos:<topic>:<group>``: the group's committed position (hash partition -> offset),
  what ``positions`` and the lag read; commits keep it in step with the consumer group.
- ``done:<group>``: processed event IDs (hash ID -> topic); ``ver:<topic>:<group>``: the
  highest processed version per key; ``groups``: registered (group, topic) pairs.
- ``claim:<topic>:<group>``: the member consuming the group on the topic, with a TTL
  (the bus's ``claim_ttl``, see below).
- ``dlq`` (sorted by failure time) and ``dlq:<id>``: dead letters.

Consuming (:class:`~afterward.events._backend.GroupLog`): a member of the group reads
with ``XREADGROUP`` and acknowledges with ``XACK``. A stream delivers to a group's
consumers round-robin, which would break per-key order, so one member at a time holds
the group's claim on the topic and reads; the others stand by and take over when its
claim expires (a member renews it in the background while it lives;
``EventBus(claim_ttl=...)`` sets how long a dead member's claim lasts, 30 s by default).
A member that newly holds the claim first moves every pending entry of the group to itself
(``XAUTOCLAIM`` with no idle time: only a dead member, or one that lost its claim,
can own them), re-reads them in offset order (``XREADGROUP`` from ``0``), then reads
new entries (``>``, blocking up to the fetch timeout). The consumer group is created at
the group's committed position when a member first holds the claim. Behind (the last
batch was full), a member reads through a script that returns only entry IDs and
payloads, a third of the reply ``XREADGROUP`` sends; caught up, a blocking
``XREADGROUP`` waits for the next events.

One event is appended by a single ``XADD``, several by a Lua script (all or none). A
member's commit is one Lua script, so it is atomic: it records processed IDs, raises key
versions, acknowledges the batch (``XACK``) and moves the position. A member that lost
its claim (a slow one, taken over) may still commit: its processed IDs are true and make
the new owner skip those events; the position only moves forward, and not at all when
none of the batch was still pending (a ``replay`` dropped it, or the new owner
acknowledged it). ``rewind`` (``replay``) moves the position and the consumer group
(``XGROUP SETID``) and acknowledges every pending entry, so the group really re-reads
from there. The other writes (``register``, ``commit``, ``claim``...) are scripts too.

Needs Redis 7.0 or later (``XADD`` with ``0-*``). Scripts touch several keys, so on
Redis Cluster put the whole bus in one hash slot with a braced prefix
(``prefix={afterward}:``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis

from afterward._exceptions import BackendError, BackendUnavailable, ConfigError
from afterward._loop import background_loop, in_background_loop
from afterward.events._protocols import Backend, ConnectContext, Member, StateStore
from afterward.events._records import AppendRecord, Done, StoredDeadLetter, StoredEvent
from afterward.events.backends._loops import close_on_their_loops

__all__ = ["RedisLog"]

# KEYS: the streams. ARGV: per record, its stream's index in KEYS, ID, timestamp, payload.
_APPEND = """
for i = 1, #ARGV, 4 do
  redis.call('XADD', KEYS[tonumber(ARGV[i])], '0-*',
             'id', ARGV[i + 1], 'ts', ARGV[i + 2], 'payload', ARGV[i + 3])
end
return 1
"""

_REGISTER = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  redis.call('SADD', KEYS[2], ARGV[1])
end
return 1
"""

# Records a batch's done items: ``items`` is a JSON array of [event ID, processed (1/0)]
# or [event ID, processed, key, version] (the version as a string). KEYS[2] is the
# processed-ID hash, KEYS[3] the key versions. (One JSON argument instead of five per
# item: encoding thousands of arguments was a good part of a commit's cost.)
_RECORD_DONE = """
local function record_done(topic, items)
  local marks = {}
  for _, item in ipairs(cjson.decode(items)) do
    if item[2] == 1 then
      marks[#marks + 1] = item[1]
      marks[#marks + 1] = topic
    end
    if item[4] then
      local known = redis.call('HGET', KEYS[3], item[3])
      if (not known) or tonumber(known) < tonumber(item[4]) then
        redis.call('HSET', KEYS[3], item[3], item[4])
      end
    end
  end
  for s = 1, #marks, 2000 do
    redis.call('HSET', KEYS[2], unpack(marks, s, math.min(s + 1999, #marks)))
  end
end
"""

# KEYS: position hash, processed IDs, key versions. ARGV: topic, done items, then
# partition/offset pairs.
_COMMIT = (
    _RECORD_DONE
    + """
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
record_done(ARGV[1], ARGV[2])
return 1
"""
)

# A member's commit. KEYS: position hash, processed IDs, key versions, stream. ARGV:
# topic, done items, group, the new position, the batch's entry IDs (a JSON array). The
# position moves (forward only) when some of the batch was still pending.
_MEMBER_COMMIT = (
    _RECORD_DONE
    + """
record_done(ARGV[1], ARGV[2])
local ids = cjson.decode(ARGV[5])
local acked = 0
for s = 1, #ids, 1000 do
  acked = acked + redis.call('XACK', KEYS[4], ARGV[3], unpack(ids, s, math.min(s + 999, #ids)))
end
if acked > 0 then
  local known = redis.call('HGET', KEYS[1], '0')
  if (not known) or tonumber(known) < tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], '0', ARGV[4])
  end
end
return acked
"""
)

# KEYS: the processed-ID hash. ARGV: a JSON array of event IDs. Returns the (1-based)
# indexes of those recorded: usually few, so the reply stays small.
_PROCESSED = """
local found = {}
for i, id in ipairs(cjson.decode(ARGV[1])) do
  if redis.call('HEXISTS', KEYS[1], id) == 1 then found[#found + 1] = i end
end
return found
"""

# A member's read without blocking. KEYS: stream. ARGV: group, member, the ID to read
# after ('>' for new entries), count. Returns entry ID, payload, entry ID, payload...
# (the payload false for an entry deleted by hand while pending): a third of the reply
# XREADGROUP sends with every field, which redis-py parses line by line.
_FETCH = """
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[1], ARGV[3])
local out = {}
if not reply then return out end
for _, entry in ipairs(reply[1][2]) do
  local payload = false
  if entry[2] then
    for j = 1, #entry[2], 2 do
      if entry[2][j] == 'payload' then payload = entry[2][j + 1] end
    end
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = payload
end
return out
"""

# KEYS: position hash, processed IDs, key versions, stream. ARGV: topic, forget, group,
# then partition/offset pairs. With positions, the consumer group (if any) moves there and
# its pending entries are dropped: a batch in flight commits without moving the position.
_REWIND = """
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3])
  local done = redis.call('HGETALL', KEYS[2])
  for i = 1, #done, 2 do
    if done[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[2], done[i]) end
  end
end
local position = redis.call('HGET', KEYS[1], '0')
if #ARGV >= 4 and position and redis.call('EXISTS', KEYS[4]) == 1 then
  local moved = redis.pcall('XGROUP', 'SETID', KEYS[4], ARGV[3], '0-' .. position)
  if type(moved) == 'table' and moved.err then
    if not string.find(moved.err, 'NOGROUP', 1, true) then return moved end
  else
    while true do
      local pending = redis.call('XPENDING', KEYS[4], ARGV[3], '-', '+', 1000)
      if #pending == 0 then break end
      local ids = {}
      for j, entry in ipairs(pending) do ids[j] = entry[1] end
      redis.call('XACK', KEYS[4], ARGV[3], unpack(ids))
    end
  end
end
return 1
"""

_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if holder then return 1 end
  return 2
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# A member newly holding the claim. KEYS: stream, position hash. ARGV: group, member.
# Creates the consumer group at the committed position if missing, moves every pending
# entry to this member, and deletes the other consumers that have none left (dead ones).
_TAKE_OVER = """
local position = redis.call('HGET', KEYS[2], '0') or '0'
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0-' .. position, 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP', 1, true) then
  return made
end
local cursor = '0-0'
repeat
  cursor = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, cursor,
                      'COUNT', 1000, 'JUSTID')[1]
until cursor == '0-0'
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for j = 1, #consumer, 2 do info[consumer[j]] = consumer[j + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
  end
end
return 1
"""

# A member leaving. KEYS: claim, stream. ARGV: member, group. Releases the claim and
# deletes the consumer unless it still has pending entries (the next owner takes them).
_LEAVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local mine = redis.pcall('XPENDING', KEYS[2], ARGV[2], '-', '+', 1, ARGV[1])
if type(mine) == 'table' and not mine.err and #mine == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[2], ARGV[2], ARGV[1])
end
return 1
"""

_SHA = {
    source: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    for source in (
        _APPEND,
        _REGISTER,
        _COMMIT,
        _MEMBER_COMMIT,
        _PROCESSED,
        _FETCH,
        _REWIND,
        _CLAIM,
        _RELEASE,
        _TAKE_OVER,
        _LEAVE,
    )
}

_CHUNK = 1000

#: Clients of afterward's background loop (the sync twins), by redis-py URL.
_background_clients: dict[str, Redis] = {}


def _split_url(url: str) -> tuple[str, str]:
    """Return (the URL redis-py gets, the key prefix) for a ``redis://`` bus URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "afterward:"
    kept = []
    for name, value in query:
        if name == "prefix":
            prefix = value
        else:
            kept.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


def _stream_id(offset: int) -> str:
    return f"0-{offset + 1}"


def _offset(stream_id: bytes) -> int:
    return int(stream_id.split(b"-", 1)[1]) - 1


def _done_json(done: Sequence[Done]) -> bytes:
    """``done`` as the JSON argument the commit scripts take."""
    items: list[list[Any]] = []
    for item in done:
        entry: list[Any] = [item.event_id, 1 if item.processed else 0]
        if item.key is not None and item.version is not None:
            entry += [item.key, str(item.version)]
        items.append(entry)
    return json.dumps(items, ensure_ascii=False).encode()


class RedisLog(ConnectContext):
    """An event log on Redis Streams. See the module docstring.

    Args:
        url: ``redis://[user:password@]host:port/db[?prefix=...]`` (``rediss://`` for
            TLS); other query parameters go to redis-py.

    Attributes:
        prefix: the key prefix.
    """

    scheme = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        self.url = url
        self._redis_url, self.prefix = _split_url(url)
        try:
            Redis.from_url(self._redis_url)  # validate now: a bad URL is a ConfigError
        except ValueError as exc:
            raise ConfigError(f"bad Redis bus URL {url!r}: {exc}") from exc
        # redis-py's asyncio client belongs to the loop it first ran on; the sync twins
        # run on afterward's background loop, so keep one client per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )

    # -- plumbing ---------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _client(self) -> Redis:
        if in_background_loop():
            # The sync twins' loop lives as long as the process and a sync user (Flask,
            # Django) rarely closes the bus: its clients are kept per URL so none is
            # garbage-collected unclosed.
            client = _background_clients.get(self._redis_url)
            if client is None:
                client = _background_clients[self._redis_url] = self._new_client()
            return client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._new_client()
        return client

    def _new_client(self) -> Redis:
        # A blocking pool: a burst of concurrent publishes waits for a connection instead
        # of failing with "Too many connections".
        pool = BlockingConnectionPool.from_url(
            self._redis_url, health_check_interval=30, timeout=30
        )
        return Redis.from_pool(pool)

    @contextlib.asynccontextmanager
    async def _errors(self, doing: str) -> AsyncIterator[Redis]:
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            yield self._client()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise BackendUnavailable(
                f"Redis bus {self._redis_url!r} unreachable while {doing}: {exc}",
                backend="redis",
            ) from exc
        except redis_errors.RedisError as exc:
            raise BackendError(
                f"Redis bus {self._redis_url!r} failed while {doing}: {type(exc).__name__}: {exc}",
                backend="redis",
            ) from exc
        # redis-py can complete a command whose task was cancelled meanwhile and return
        # normally, swallowing the cancellation (seen with Lua scripts on Python 3.11):
        # a consumer would then never stop. Give the cancellation back.
        if task is not None and task.cancelling() > cancelling:
            raise asyncio.CancelledError(f"cancelled while {doing}")

    async def _script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self._client()
        try:
            return await client.evalsha(_SHA[source], len(keys), *keys, *args)
        except redis_errors.NoScriptError:  # a restarted or another server: send it once
            return await client.eval(source, len(keys), *keys, *args)

    async def connect(self) -> None:
        async with self._errors("connecting") as client:
            await client.ping()

    async def aclose(self) -> None:
        clients, self._clients = dict(self._clients), weakref.WeakKeyDictionary()
        background = _background_clients.pop(self._redis_url, None)
        if background is not None:
            clients[background_loop()] = background
        await close_on_their_loops(clients, lambda client: client.aclose())

    # -- the log ----------------------------------------------------------------------

    async def append(self, records: Sequence[AppendRecord]) -> None:
        if not records:
            return
        if len(records) == 1:  # one command is atomic: no script needed
            record = records[0]
            fields: Any = {"id": record.event_id, "ts": repr(record.timestamp)}
            fields["payload"] = record.payload
            async with self._errors("appending") as client:
                await client.xadd(self._key("stream", record.topic), fields, id="0-*")
            return
        streams: dict[str, int] = {}
        args: list[Any] = []
        for record in records:
            index = streams.setdefault(self._key("stream", record.topic), len(streams) + 1)
            args += [index, record.event_id, repr(record.timestamp), record.payload]
        async with self._errors("appending"):
            await self._script(_APPEND, list(streams), args)

    async def read(
        self, topic: str, positions: Mapping[int, int], limit: int
    ) -> Sequence[StoredEvent]:
        start = positions.get(0, 0)
        async with self._errors(f"reading {topic!r}") as client:
            entries: Any = await client.xrange(
                self._key("stream", topic), min=_stream_id(start), count=limit
            )
        return [
            StoredEvent(topic, 0, _offset(entry_id), fields[b"payload"])
            for entry_id, fields in entries
        ]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        # Entries are never deleted, so the length is the end offset.
        stream = self._key("stream", topic)
        async with self._errors(f"reading the end of {topic!r}") as client:
            end = await client.xlen(stream)
            if not end and not await client.exists(stream):
                return {}
        return {0: int(end)}

    async def offsets_for_time(self, topic: str, since: datetime) -> dict[int, int]:
        # Offsets are dense, so a binary search of single-entry XRANGEs finds the first
        # event at or after ``since`` in O(log n) round trips.
        target = since.timestamp()
        stream = self._key("stream", topic)
        async with self._errors(f"searching {topic!r} by time") as client:
            low, high = 0, (await self.end_offsets(topic)).get(0, 0)
            while low < high:
                middle = (low + high) // 2
                entry: Any = await client.xrange(
                    stream, min=_stream_id(middle), max=_stream_id(middle), count=1
                )
                if entry and float(entry[0][1][b"ts"]) >= target:
                    high = middle
                else:
                    low = middle + 1
        return {0: low}

    # -- groups -----------------------------------------------------------------------

    async def positions(self, group: str, topic: str) -> dict[int, int] | None:
        async with self._errors(f"reading positions of {group!r}") as client:
            found = await client.hgetall(self._key("pos", topic, group))
        return {int(p): int(o) for p, o in found.items()} if found else None

    async def register(self, group: str, topic: str, positions: Mapping[int, int]) -> None:
        args: list[Any] = [json.dumps([group, topic])]
        for partition, offset in (dict(positions) or {0: 0}).items():
            args += [partition, offset]
        async with self._errors(f"registering {group!r}"):
            await self._script(
                _REGISTER, [self._key("pos", topic, group), self._key("groups")], args
            )

    async def groups(self) -> dict[str, list[str]]:
        async with self._errors("listing groups") as client:
            members = await client.smembers(self._key("groups"))
        found: dict[str, list[str]] = {}
        for group, topic in sorted(json.loads(m) for m in members):
            found.setdefault(group, []).append(topic)
        return found

    async def claim(self, group: str, topic: str, owner: str, ttl: float) -> bool:
        return bool(await self._claim(group, topic, owner, ttl))

    async def _claim(self, group: str, topic: str, owner: str, ttl: float) -> int:
        """0: held by another; 1: renewed; 2: taken afresh (nobody held it, not even
        ``owner``: whatever happened meanwhile needs a takeover)."""
        async with self._errors(f"claiming {group!r}"):
            held = await self._script(
                _CLAIM, [self._key("claim", topic, group)], [owner, max(1, int(ttl * 1000))]
            )
        return int(held)

    async def release(self, group: str, topic: str, owner: str) -> None:
        async with self._errors(f"releasing {group!r}"):
            await self._script(_RELEASE, [self._key("claim", topic, group)], [owner])

    def _state_keys(self, group: str, topic: str) -> list[str]:
        """The position hash, processed IDs and key versions of ``group`` in ``topic``."""
        return [
            self._key("pos", topic, group),
            self._key("done", group),
            self._key("ver", topic, group),
        ]

    async def commit(
        self, group: str, topic: str, positions: Mapping[int, int], done: Sequence[Done]
    ) -> None:
        # Positions only: the consumer group follows members' commits and rewinds (the
        # bus commits this way only for a dead-letter retry, without positions).
        args: list[Any] = [topic, _done_json(done)]
        for partition, offset in positions.items():
            args += [partition, offset]
        async with self._errors(f"committing {group!r}"):
            await self._script(_COMMIT, self._state_keys(group, topic), args)

    async def processed(self, group: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        ids = list(event_ids)
        async with self._errors(f"reading processed IDs of {group!r}"):
            found = await self._script(
                _PROCESSED,
                [self._key("done", group)],
                [json.dumps(ids, ensure_ascii=False).encode()],
            )
        return {ids[i - 1] for i in found}

    async def key_versions(self, group: str, topic: str, keys: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        async with self._errors(f"reading key versions of {group!r}") as client:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                values = await client.hmget(self._key("ver", topic, group), chunk)
                found.update((k, int(v)) for k, v in zip(chunk, values, strict=True) if v)
        return found

    async def rewind(
        self, group: str, topic: str, positions: Mapping[int, int], *, forget: bool
    ) -> None:
        args: list[Any] = [topic, "1" if forget else "0", group]
        for partition, offset in positions.items():
            args += [partition, offset]
        keys = [*self._state_keys(group, topic), self._key("stream", topic)]
        async with self._errors(f"rewinding {group!r}"):
            await self._script(_REWIND, keys, args)

    # -- consumer groups (GroupLog) ---------------------------------------------------

    async def join(self, group: str, topic: str, claim_ttl: float) -> Member:
        """Become a member of ``group`` on ``topic``: see the module docstring.

        Joining costs no round trip; the member claims the group on its first ``fetch``
        and holds the claim for ``claim_ttl`` seconds past its last renewal.
        """
        return _Member(self, group, topic, claim_ttl)

    async def _take_over(self, group: str, topic: str, member: str) -> None:
        keys = [self._key("stream", topic), self._key("pos", topic, group)]
        async with self._errors(f"taking over group {group!r}"):
            await self._script(_TAKE_OVER, keys, [group, member])

    async def _read_group(
        self, group: str, topic: str, member: str, after: str, limit: int, block: int | None
    ) -> tuple[bytes | None, list[tuple[bytes, StoredEvent]]]:
        """Read for ``member`` after ``after`` (``>``: new entries; an ID: its pending
        ones), blocking up to ``block`` ms when given; return the last entry ID read
        (``None`` for none) and the events with their entry IDs."""
        stream = self._key("stream", topic)
        doing = f"reading {topic!r} for group {group!r}"
        if block is None:
            async with self._errors(doing):
                flat: Any = await self._script(_FETCH, [stream], [group, member, after, limit])
            entries = list(zip(flat[::2], flat[1::2], strict=True))
        else:
            async with self._errors(doing) as client:
                reply: Any = await client.xreadgroup(
                    group, member, {stream: after}, count=limit, block=block
                )
            entries = [
                (entry_id, fields.get(b"payload") if fields else None)
                for _, batch in reply or ()
                for entry_id, fields in batch
            ]
        found = [
            (entry_id, StoredEvent(topic, 0, _offset(entry_id), payload))
            for entry_id, payload in entries
            if payload is not None  # a pending entry deleted by hand (XDEL)
        ]
        return (entries[-1][0] if entries else None), found

    async def _member_commit(
        self,
        group: str,
        topic: str,
        position: int,
        entry_ids: Sequence[bytes],
        done: Sequence[Done],
    ) -> None:
        keys = [*self._state_keys(group, topic), self._key("stream", topic)]
        ids = json.dumps([entry_id.decode() for entry_id in entry_ids]).encode()
        args: list[Any] = [topic, _done_json(done), group, position, ids]
        async with self._errors(f"committing {group!r}"):
            await self._script(_MEMBER_COMMIT, keys, args)

    async def _leave(self, group: str, topic: str, member: str) -> None:
        keys = [self._key("claim", topic, group), self._key("stream", topic)]
        async with self._errors(f"leaving group {group!r}"):
            await self._script(_LEAVE, keys, [member, group])

    # -- dead letters -----------------------------------------------------------------

    async def add_dead_letter(self, letter: StoredDeadLetter) -> None:
        await self.update_dead_letter(letter)

    async def dead_letters(self, group: str | None) -> list[StoredDeadLetter]:
        async with self._errors("listing dead letters") as client:
            ids: Any = await client.zrange(self._key("dlq"), 0, -1)
            async with client.pipeline(transaction=False) as pipe:
                for letter_id in ids:
                    pipe.hgetall(self._key("dlq", letter_id.decode()))
                rows = await pipe.execute()
        letters = [_letter(row) for row in rows if row]
        return [x for x in letters if group is None or x.group == group]

    async def dead_letter(self, letter_id: str) -> StoredDeadLetter | None:
        async with self._errors("reading a dead letter") as client:
            row: Any = await client.hgetall(self._key("dlq", letter_id))
        return _letter(row) if row else None

    async def update_dead_letter(self, letter: StoredDeadLetter) -> None:
        fields: Any = {
            "id": letter.id,
            "group": letter.group,
            "topic": letter.topic,
            "payload": letter.payload,
            "error": letter.error,
            "traceback": letter.traceback,
            "attempts": letter.attempts,
            "failed_at": repr(letter.failed_at.timestamp()),
        }
        async with self._errors("storing a dead letter") as client:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._key("dlq", letter.id), mapping=fields)
                pipe.zadd(self._key("dlq"), {letter.id: letter.failed_at.timestamp()})
                await pipe.execute()

    async def delete_dead_letter(self, letter_id: str) -> bool:
        async with self._errors("deleting a dead letter") as client:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key("dlq", letter_id))
                pipe.zrem(self._key("dlq"), letter_id)
                deleted, _ = await pipe.execute()
        return bool(deleted)


class _Member:
    """One member of a group on a topic (:class:`~afterward.events._backend.Member`).

    It reads only while it holds the group's claim on the topic (renewed in the
    background every third of ``claim_ttl``); otherwise ``fetch`` waits and returns
    nothing. Its Redis consumer name is also its claim owner: host, PID and a random part.
    """

    def __init__(self, log: RedisLog, group: str, topic: str, claim_ttl: float) -> None:
        self._log = log
        self.claim_ttl = claim_ttl
        self.group = group
        self.topic = topic
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._held = False
        self._held_until = 0.0
        self._ever_held = False
        self._heartbeat: asyncio.Task[None] | None = None
        #: While re-reading its own pending entries: the ID to read after.
        self._pending_after: str | None = None
        self._batch: list[bytes] = []
        #: Whether the last batch was full: the next read then starts without blocking.
        self._behind = True
        self._closed = False

    async def _hold(self) -> bool:
        """Whether this member holds the claim, claiming (and taking over) if it can."""
        ttl = self.claim_ttl
        now = time.monotonic()
        if self._held and self._held_until - now > ttl * 2 / 3:
            return True  # renewed lately (the heartbeat): no round trip
        held = await self._log._claim(self.group, self.topic, self.name, ttl)
        if not held:
            self._held = False
            return False
        self._held_until = now + ttl
        self._ever_held = True
        # Taken afresh: even if this member thought it held the claim, it lapsed (a
        # stalled process) and another member may have taken over and let go meanwhile.
        if not self._held or held == 2:
            # Newly held: whatever is pending in the group was left by a member that died
            # or lost its claim. Take it, then hand it out again before anything new.
            await self._log._take_over(self.group, self.topic, self.name)
            self._held = True
            self._pending_after = "0"
            if self._heartbeat is None or self._heartbeat.done():
                self._heartbeat = asyncio.create_task(self._keep_claim())
        return True

    async def _keep_claim(self) -> None:
        ttl = self.claim_ttl
        while self._held:
            await asyncio.sleep(ttl / 3)
            started = time.monotonic()
            try:
                held = await self._log._claim(self.group, self.topic, self.name, ttl)
            except BackendError:
                continue  # fetch and commit report it; the claim may outlive a blip
            if held == 1:
                self._held_until = started + ttl
            else:  # lost, or lapsed before this renewal: the next fetch takes over anew
                self._held = False

    async def fetch(self, limit: int, timeout: float) -> Sequence[StoredEvent]:
        """Up to ``limit`` events: pending ones first after a takeover, then new ones
        (waiting up to ``timeout``). Empty after a wait while another member holds the
        claim (``min(claim_ttl / 3, 1)`` seconds, at least ``timeout``: no hot loop)."""
        self._batch = []
        if not await self._hold():
            await asyncio.sleep(max(timeout, min(self.claim_ttl / 3, 1.0)))
            return []
        read = self._log._read_group
        while self._pending_after is not None:
            last, found = await read(
                self.group, self.topic, self.name, self._pending_after, limit, None
            )
            self._pending_after = None if last is None else last.decode()
            if found:
                return self._hand_out(found)
        found = []
        if self._behind:  # the last batch was full: more is likely waiting, read it compactly
            _, found = await read(self.group, self.topic, self.name, ">", limit, None)
        if not found:
            block = max(1, int(timeout * 1000))
            _, found = await read(self.group, self.topic, self.name, ">", limit, block)
        self._behind = len(found) >= limit
        return self._hand_out(found)

    def _hand_out(self, found: list[tuple[bytes, StoredEvent]]) -> list[StoredEvent]:
        self._batch = [entry_id for entry_id, _ in found]
        return [event for _, event in found]

    async def commit(self, positions: Mapping[int, int], done: Sequence[Done]) -> None:
        """Record ``done``, ``XACK`` the fetched batch and move the position, atomically."""
        batch, self._batch = self._batch, []
        position = positions.get(0, 0)
        await self._log._member_commit(self.group, self.topic, position, batch, done)

    async def close(self) -> None:
        """Stop renewing, release the claim, and delete the Redis consumer unless it has
        pending entries (an uncommitted batch: the next owner takes it over)."""
        if self._closed:
            return
        self._closed = True
        self._held = False
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            # Wait for it (without taking its cancellation for ours): a renewal in flight
            # must not land after the release below.
            await asyncio.wait([heartbeat])
        if self._ever_held:
            await self._log._leave(self.group, self.topic, self.name)


def _letter(row: Mapping[bytes, bytes]) -> StoredDeadLetter:
    return StoredDeadLetter(
        id=row[b"id"].decode(),
        group=row[b"group"].decode(),
        topic=row[b"topic"].decode(),
        payload=row[b"payload"],
        error=row[b"error"].decode(),
        traceback=row[b"traceback"].decode(),
        attempts=int(row[b"attempts"]),
        failed_at=datetime.fromtimestamp(float(row[b"failed_at"]), UTC),
    )


@atexit.register
def _close_background() -> None:
    # Close the sync twins' clients while their loop still runs (it is a daemon thread).
    for conn in list(_background_clients.values()):
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(conn.aclose(), background_loop()).result(5)
    _background_clients.clear()


def open_backend(url: str, open_store: Callable[[str], StateStore]) -> Backend:
    """The backend of a ``redis://`` URL: the log is its own state store."""
    return Backend.of(RedisLog(url))
