"""A member of a group on a topic: ``XREADGROUP`` under the group's claim, ``XACK`` in
the commit script (:class:`~afterward.events._protocols.Member`).

A stream delivers to a group's consumers round-robin, which would split a key's events
between processes; so a member reads only while it holds the group's claim on the topic
(an :class:`~afterward.events._lease.Lease` on ``claim:<topic>:<group>``, renewed in the
background every third of ``claim_ttl``). A member that newly holds it takes over the
group's pending entries (``take_over.lua``) and re-reads them before new ones.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from afterward.events._lease import Held, Lease
from afterward.events._records import Done, StoredEvent
from afterward.events.backends.redis import _codec, _scripts
from afterward.events.backends.redis._client import RedisClients

__all__ = ["Claim", "RedisMember"]

#: ``claim(owner, ttl)``: the log's claim primitive for the member's (group, topic),
#: returning a :class:`~afterward.events._lease.Held` code.
Claim = Callable[[str, float], Awaitable[int]]


class RedisMember:
    """One member of ``group`` consuming ``topic``.

    It reads only while it holds the group's claim on the topic; otherwise ``fetch``
    waits and returns nothing. Its Redis consumer name is also its claim owner: host,
    PID and a random part.

    Args:
        clients: the log's clients.
        group: the afterward group (also the Redis consumer group's name).
        topic: the topic (its stream).
        claim_ttl: how long the claim outlives the member's last renewal.
        claim: the log's claim primitive for (group, topic).
    """

    def __init__(
        self, clients: RedisClients, group: str, topic: str, claim_ttl: float, claim: Claim
    ) -> None:
        self._clients = clients
        self.claim_ttl = claim_ttl
        self.group = group
        self.topic = topic
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stream = clients.keys.stream(topic)
        self._lease = Lease(functools.partial(claim, self.name), claim_ttl)
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
        held = await self._lease.hold()
        if held is Held.NO:
            return False
        self._ever_held = True
        # FRESH also when this member thought it held the claim but it lapsed (a stalled
        # process): another member may have taken over and let go meanwhile. Whatever is
        # pending in the group was left by a member that died or lost its claim: take it,
        # then hand it out again before anything new.
        if held is Held.FRESH:
            try:
                await self._take_over()
            except BaseException:
                # Not taken over: the next fetch must count the claim as fresh again.
                self._lease.forget()
                raise
            self._pending_after = "0"
            if self._heartbeat is None or self._heartbeat.done():
                self._heartbeat = asyncio.create_task(self._lease.keep())
        return True

    async def _take_over(self) -> None:
        keys = [self._stream, self._clients.keys.pos(self.topic, self.group)]
        async with self._clients.errors(f"taking over group {self.group!r}"):
            await self._clients.script(_scripts.TAKE_OVER, keys, [self.group, self.name])

    async def fetch(self, limit: int, timeout: float) -> Sequence[StoredEvent]:
        """Up to ``limit`` events: pending ones first after a takeover, then new ones
        (waiting up to ``timeout``). Empty after a wait while another member holds the
        claim (``min(claim_ttl / 3, 1)`` seconds, at least ``timeout``: no hot loop)."""
        self._batch = []
        if not await self._hold():
            await asyncio.sleep(max(timeout, min(self.claim_ttl / 3, 1.0)))
            return []
        while self._pending_after is not None:
            last, found = await self._read(self._pending_after, limit, None)
            self._pending_after = None if last is None else last.decode()
            if found:
                return self._hand_out(found)
        found = []
        if self._behind:  # the last batch was full: more is likely waiting, read it compactly
            _, found = await self._read(">", limit, None)
        if not found:
            _, found = await self._read(">", limit, max(1, int(timeout * 1000)))
        self._behind = len(found) >= limit
        return self._hand_out(found)

    async def _read(
        self, after: str, limit: int, block: int | None, *, adopted: bool = False
    ) -> tuple[bytes | None, list[tuple[bytes, StoredEvent]]]:
        """Read after ``after`` (``>``: new entries; an ID: this member's pending ones),
        blocking up to ``block`` ms when given; return the last entry ID read (``None``
        for none) and the events with their entry IDs. Entries another client added
        with an automatic ID are adopted first (read again once, when nothing else was:
        ``adopted`` says it was)."""
        doing = f"reading {self.topic!r} for group {self.group!r}"
        entries: list[tuple[bytes, Any]]
        if block is None:
            args = [self.group, self.name, after, limit]
            async with self._clients.errors(doing):
                flat: Any = await self._clients.script(_scripts.FETCH, [self._stream], args)
            entries = [
                (entry_id, packed and _codec.unpack_fields(packed))
                for entry_id, packed in zip(flat[::2], flat[1::2], strict=True)
            ]
        else:
            async with self._clients.errors(doing):
                reply: Any = await self._clients.get().xreadgroup(
                    self.group, self.name, {self._stream: after}, count=limit, block=block
                )
            entries = [
                (entry_id, fields or None) for _, batch in reply or () for entry_id, fields in batch
            ]
        last = entries[-1][0] if entries else None
        if last is not None and not _codec.dense(last):
            # Another client's ``XADD ... *``: adopted into the offsets, the group moved
            # back before it; the dense entries read go out, the adopted ones next.
            async with self._clients.errors(doing):
                await self._clients.adopt(self._stream)
            entries = [(entry_id, fields) for entry_id, fields in entries if _codec.dense(entry_id)]
            if not entries and after == ">" and not adopted:
                return await self._read(after, limit, None, adopted=True)
        found = [
            (entry_id, _codec.event(self.topic, entry_id, fields))
            for entry_id, fields in entries
            if fields  # a pending entry deleted by hand (XDEL)
        ]
        return last, found

    def _hand_out(self, found: list[tuple[bytes, StoredEvent]]) -> list[StoredEvent]:
        self._batch = [entry_id for entry_id, _ in found]
        return [event for _, event in found]

    async def commit(self, positions: Mapping[int, int], done: Sequence[Done]) -> None:
        """Record ``done``, ``XACK`` the fetched batch and move the position, atomically
        (``member_commit.lua``; the position only moves forward)."""
        batch, self._batch = self._batch, []
        keys = [*self._clients.keys.state(self.group, self.topic), self._stream]
        ids = _codec.json_list([entry_id.decode() for entry_id in batch])
        args: list[Any] = [self.topic, _codec.done_json(done), self.group, positions.get(0, 0)]
        async with self._clients.errors(f"committing {self.group!r}"):
            await self._clients.script(_scripts.MEMBER_COMMIT, keys, [*args, ids])

    async def close(self) -> None:
        """Stop renewing, release the claim, and delete the Redis consumer unless it has
        pending entries (an uncommitted batch: the next owner takes it over)."""
        if self._closed:
            return
        self._closed = True
        self._lease.forget()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            # Wait for it (without taking its cancellation for ours): a renewal in flight
            # must not land after the release below.
            await asyncio.wait([heartbeat])
        if self._ever_held:
            keys = [self._clients.keys.claim(self.topic, self.group), self._stream]
            async with self._clients.errors(f"leaving group {self.group!r}"):
                await self._clients.script(_scripts.LEAVE, keys, [self.name, self.group])
