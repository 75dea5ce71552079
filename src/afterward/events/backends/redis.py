"""``redis://host:port/db?prefix=afterward:``: the bus on Redis Streams (``afterward[redis]``).

Layout, every key under ``prefix`` (default ``afterward:``), so one Redis can hold many
buses and nothing outside the prefix is touched:

- ``stream:<topic>``: the topic's log, one stream (one partition). Entry IDs are dense,
  ``0-<offset + 1>``, so an offset maps to a stream ID without an index and
  ``XRANGE`` reads from any position; fields ``id``, ``ts``, ``payload``.
- ``offset:<topic>``: the number of events appended (the end offset).
- ``pos:<topic>:<group>``: the group's committed position (hash partition -> offset).
- ``done:<group>``: processed event IDs (hash ID -> topic); ``ver:<topic>:<group>``: the
  highest processed version per key; ``groups``: registered (group, topic) pairs.
- ``claim:<topic>:<group>``: the consumer holding the group on the topic, with a TTL
  (a dead consumer's claim expires and another takes over: the role ``XAUTOCLAIM``'s
  idle time plays for stream consumer groups).
- ``dlq`` (sorted by failure time) and ``dlq:<id>``: dead letters.

Appends and commits are Lua scripts, so each is atomic: an append assigns offsets and
writes every record, a commit moves the position, records processed IDs and raises key
versions in one step. Scripts touch several keys, so on Redis Cluster put the whole bus
in one hash slot with a braced prefix (``prefix={afterward}:``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis

from afterward._exceptions import BackendError, BackendUnavailable, ConfigError
from afterward._loop import background_loop, in_background_loop
from afterward.events._backend import (
    AppendRecord,
    ConnectContext,
    Done,
    StoredDeadLetter,
    StoredEvent,
)
from afterward.events.backends._loops import close_on_their_loops

__all__ = ["RedisLog"]

_APPEND = """
local n = tonumber(ARGV[1])
local i = 2
for _ = 1, n do
  local t = tonumber(ARGV[i])
  local off = redis.call('INCR', KEYS[2 * t])
  redis.call('XADD', KEYS[2 * t - 1], '0-' .. off,
             'id', ARGV[i + 1], 'ts', ARGV[i + 2], 'payload', ARGV[i + 3])
  i = i + 4
end
return n
"""

_REGISTER = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  redis.call('SADD', KEYS[2], ARGV[1])
end
return 1
"""

_COMMIT = """
local topic = ARGV[1]
local npos = tonumber(ARGV[2])
local i = 3
for _ = 1, npos do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local ndone = tonumber(ARGV[i])
i = i + 1
for _ = 1, ndone do
  if ARGV[i + 1] == '1' then redis.call('HSET', KEYS[2], ARGV[i], topic) end
  if ARGV[i + 2] == '1' then
    local known = redis.call('HGET', KEYS[3], ARGV[i + 3])
    if (not known) or tonumber(known) < tonumber(ARGV[i + 4]) then
      redis.call('HSET', KEYS[3], ARGV[i + 3], ARGV[i + 4])
    end
  end
  i = i + 5
end
return 1
"""

_REWIND = """
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3])
  local done = redis.call('HGETALL', KEYS[2])
  for i = 1, #done, 2 do
    if done[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[2], done[i]) end
  end
end
return 1
"""

_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

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


class RedisLog(ConnectContext):
    """An event log on Redis Streams. See the module docstring.

    Args:
        url: ``redis://[user:password@]host:port/db[?prefix=...]`` (``rediss://`` for TLS);
            other query parameters go to redis-py.
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
        return await client.register_script(source)(keys=list(keys), args=list(args))

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
        topics: dict[str, int] = {}
        keys: list[str] = []
        args: list[Any] = [len(records)]
        for record in records:
            if record.topic not in topics:
                topics[record.topic] = len(topics) + 1
                keys += [self._key("stream", record.topic), self._key("offset", record.topic)]
            args += [topics[record.topic], record.event_id, repr(record.timestamp), record.payload]
        async with self._errors("appending"):
            await self._script(_APPEND, keys, args)

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
        async with self._errors(f"reading the end of {topic!r}") as client:
            end = await client.get(self._key("offset", topic))
        return {} if end is None else {0: int(end)}

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
        async with self._errors(f"claiming {group!r}"):
            held = await self._script(
                _CLAIM, [self._key("claim", topic, group)], [owner, max(1, int(ttl * 1000))]
            )
        return bool(held)

    async def release(self, group: str, topic: str, owner: str) -> None:
        async with self._errors(f"releasing {group!r}"):
            await self._script(_RELEASE, [self._key("claim", topic, group)], [owner])

    async def commit(
        self, group: str, topic: str, positions: Mapping[int, int], done: Sequence[Done]
    ) -> None:
        args: list[Any] = [topic, len(positions)]
        for partition, offset in positions.items():
            args += [partition, offset]
        args.append(len(done))
        for item in done:
            versioned = item.key is not None and item.version is not None
            args += [
                item.event_id,
                "1" if item.processed else "0",
                "1" if versioned else "0",
                item.key or "",
                item.version if item.version is not None else 0,
            ]
        keys = [
            self._key("pos", topic, group),
            self._key("done", group),
            self._key("ver", topic, group),
        ]
        async with self._errors(f"committing {group!r}"):
            await self._script(_COMMIT, keys, args)

    async def processed(self, group: str, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self._errors(f"reading processed IDs of {group!r}") as client:
            for start in range(0, len(event_ids), _CHUNK):
                chunk = list(event_ids[start : start + _CHUNK])
                marks = await client.hmget(self._key("done", group), chunk)
                found.update(i for i, mark in zip(chunk, marks, strict=True) if mark is not None)
        return found

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
        args: list[Any] = [topic, "1" if forget else "0"]
        for partition, offset in positions.items():
            args += [partition, offset]
        keys = [
            self._key("pos", topic, group),
            self._key("done", group),
            self._key("ver", topic, group),
        ]
        async with self._errors(f"rewinding {group!r}"):
            await self._script(_REWIND, keys, args)

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
