"""Retention on Redis (API.md section 5): streams trimmed, group state pruned with them.

- Events: a topic's stream loses its oldest entries with ``XTRIM <stream> MINID``, at
  most ``limit`` at a time and never its newest entry (the next ``0-*`` ID follows the
  stream's last one anyway, so offsets go on). Entry IDs are dense offsets, not times,
  so the cut is found by a binary search of the entries' ``ce_time`` in the batch's
  window: a trim removes a prefix, up to the first event at or after the cutoff.
- Group state: each commit also appends its done items, after the server's time, to
  the group's commit log on the topic (``done-log:<topic>:<group>``, a list: one
  ``RPUSH`` of the script's own argument, so a commit costs next to nothing more);
  ``trim_state.lua`` pops the commits older than the retention and removes their
  processed IDs (with the deliveries counted for them) and their key versions unless a
  later commit raised them. An ID that a replay recorded again later goes with its first
  commit: its event is older than that commit, so past the retention as well.
- Storage: per topic ``XLEN``, ``MEMORY USAGE`` (Redis's estimate: it samples the
  stream's nodes) and the oldest entry's ``ce_time``.

:class:`RedisRetention` is a mixin of :class:`~afterward.events.backends.redis.RedisLog`
(the :class:`~afterward.events._protocols.PrunableLog` and
:class:`~afterward.events._protocols.PrunableState` capabilities).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from afterward.events._records import Pruned, TopicStorage
from afterward.events.backends.redis import _codec, _scripts
from afterward.events.backends.redis._client import RedisClients

__all__ = ["RedisRetention", "end_offset", "first_at"]

_GLOB = re.compile(r"([*?\[\]\\])")


async def _edge(client: Redis, stream: str, *, newest: bool) -> tuple[int, Any] | None:
    """The offset and fields of the stream's oldest (or newest) entry, ``None`` if empty;
    entries another client added with an automatic ID are adopted first (``adopt.lua``:
    their IDs are no offsets until then)."""
    for _ in range(2):
        entries: Any = await (
            client.xrevrange(stream, count=1) if newest else client.xrange(stream, count=1)
        )
        if not entries or _codec.dense(entries[0][0]):
            break
        await _scripts.run(client, _scripts.ADOPT, [stream], [])
    return (_codec.offset(entries[0][0]), entries[0][1]) if entries else None


async def end_offset(client: Redis, stream: str) -> int | None:
    """The offset the stream's next entry gets (its newest plus one: retention keeps the
    newest), ``None`` when the stream does not exist."""
    newest = await _edge(client, stream, newest=True)
    if newest is not None:
        return newest[0] + 1
    if not await client.exists(stream):
        return None
    info: Any = await client.xinfo_stream(stream)  # emptied by hand: where IDs go on
    return _codec.offset(info["last-generated-id"]) + 1


async def first_at(client: Redis, stream: str, target: float, low: int, high: int) -> int:
    """The first offset in ``[low, high)`` whose event time is at or after ``target``
    (``high`` when none is), by a binary search of single-entry ``XRANGE`` s."""
    while low < high:
        middle = (low + high) // 2
        at = _codec.stream_id(middle)
        entry: Any = await client.xrange(stream, min=at, max=at, count=1)
        if entry and _codec.time_of(entry[0][1]) >= target:
            high = middle
        else:
            low = middle + 1
    return low


class RedisRetention:
    """Pruning and storage of a Redis bus (see the module docstring)."""

    _clients: RedisClients

    async def topics(self) -> list[str]:
        """Every topic with a stream (``SCAN`` of ``stream:*`` under the prefix)."""
        keys = self._clients.keys
        start = len(keys.stream(""))
        pattern = _GLOB.sub(r"\\\1", keys.stream("")) + "*"
        async with self._clients.errors("listing topics"):
            found = [
                key[start:].decode()
                async for key in self._clients.get().scan_iter(match=pattern, count=1000)
            ]
        return sorted(set(found))

    async def prune(self, topic: str, before: float, limit: int) -> int:
        """Trim up to ``limit`` of the stream's oldest entries before ``before`` (its
        newest stays): one ``XTRIM MINID``; how many went."""
        stream = self._clients.keys.stream(topic)
        async with self._clients.errors(f"pruning {topic!r}"):
            client = self._clients.get()
            oldest = await _edge(client, stream, newest=False)
            newest = await _edge(client, stream, newest=True)
            if oldest is None or newest is None:
                return 0
            cut = await first_at(
                client, stream, before, oldest[0], min(oldest[0] + limit, newest[0])
            )
            if cut <= oldest[0]:
                return 0
            trimmed = await client.xtrim(stream, minid=_codec.stream_id(cut), approximate=False)
        return int(trimmed)

    async def first_offsets(self, topic: str) -> dict[int, int]:
        """``{0: the oldest offset stored}``, or ``{}``."""
        async with self._clients.errors(f"reading the start of {topic!r}"):
            oldest = await _edge(
                self._clients.get(), self._clients.keys.stream(topic), newest=False
            )
        return {} if oldest is None else {0: oldest[0]}

    async def storage(self) -> dict[str, TopicStorage]:
        """Per topic: ``XLEN``, ``MEMORY USAGE``, the oldest entry's time."""
        found: dict[str, TopicStorage] = {}
        for topic in await self.topics():
            stream = self._clients.keys.stream(topic)
            async with self._clients.errors(f"measuring {topic!r}"):
                client = self._clients.get()
                count = int(await client.xlen(stream))
                size = await client.memory_usage(stream)
                oldest = await _edge(client, stream, newest=False)
            when = (
                None if oldest is None else datetime.fromtimestamp(_codec.time_of(oldest[1]), UTC)
            )
            found[topic] = TopicStorage(count, int(size or 0), when)
        return found

    async def prune_state(self, before: float, limit: int) -> Pruned:
        """Remove the processed IDs and key versions of the commits made before
        ``before``, about ``limit`` of each (whole commits), across every registered
        group and topic (``trim_state.lua`` per pair)."""
        keys = self._clients.keys
        # The commit logs carry the server's time: send an age, not a time.
        age = repr(max(0.0, time.time() - before))
        processed = versions = 0
        async with self._clients.errors("pruning the group state"):
            members: Any = await self._clients.get().smembers(keys.groups)
            for group, topics in _codec.registered(members).items():
                for topic in topics:
                    if max(processed, versions) >= limit:
                        break
                    state = [
                        keys.done_log(topic, group),
                        keys.done(group),
                        keys.ver(topic, group),
                        keys.deliveries(group),
                    ]
                    left = limit - max(processed, versions)
                    ids, raised = await self._clients.script(
                        _scripts.TRIM_STATE, state, [age, left]
                    )
                    processed += int(ids)
                    versions += int(raised)
        return Pruned(processed=processed, versions=versions)
