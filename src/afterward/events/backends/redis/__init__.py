"""``redis://host:port/db?prefix=afterward:``: the bus on Redis Streams (``afterward[redis]``).

Layout, every key under ``prefix`` (default ``afterward:``), so one Redis can hold many
buses and nothing outside the prefix is touched:

- ``stream:<topic>``: the topic's log, one stream (one partition). Entry IDs are dense,
  ``0-<offset + 1>`` (appended as ``0-*``: Redis numbers them), so an offset maps to a
  stream ID without an index, ``XRANGE`` reads from any position (``tail``,
  ``offsets_for_time``) and the newest entry's offset plus one is the end offset
  (retention trims the oldest entries with ``XTRIM MINID`` and always keeps the newest,
  see ``_retention.py``). An entry is a CloudEvent in binary mode
  (:mod:`afterward.events._wire`): the attributes as fields (``ce_id``, ``ce_type``...),
  ``key``, and the value in ``data``. Other clients add entries the same way, with
  ``XADD <stream> 0-* ...``; one added with an automatic ID (``*``) is *adopted*: deleted
  and added again with ``0-*`` (same fields, same order) by the next append or read that
  meets it (``adopt.lua``), and consumer groups that were handed it read the copy. Each
  afterward group consuming the topic is a Redis consumer group of that stream, named
  like the group (``XINFO GROUPS`` shows it).
- ``pos:<topic>:<group>``: the group's committed position (hash partition -> offset),
  what ``positions`` and the lag read; commits keep it in step with the consumer group.
- ``done:<group>``: processed event IDs (hash ID -> topic); ``ver:<topic>:<group>``: the
  highest processed version per key; ``done-log:<topic>:<group>``: the group's commits
  on the topic, each its done items after the server's time (what retention prunes
  those two by); ``groups``: registered (group, topic) pairs.
- ``claim:<topic>:<group>``: the member consuming the group on the topic, with a TTL
  (the bus's ``claim_ttl``, see below).
- ``dlq`` (sorted by failure time) and ``dlq:<id>``: dead letters.
- The work queue (the ``queue`` job connection, :class:`RedisQueue`): ``job:<id>``, one
  hash per job (payload, due, priority, tries, attempts, state, worker, error...; job
  IDs are unique across queues); per queue the sorted sets ``jobs:<queue>:ready``
  (members ``<rank>|<id>``, all scores 0: ``ZPOPMIN`` takes the highest priority, then
  the earliest due, then the first enqueued, exactly for any int priority),
  ``:delayed`` (by due time), ``:running`` (by lease deadline) and ``:failed`` (by
  failure time); ``jobs:queues`` (the queue names) and ``jobs:seq`` (enqueue order).

Consuming (:class:`~afterward.events._protocols.GroupLog`): a member of the group reads
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
batch was full), a member reads through a script (``fetch.lua``) that packs each
entry's fields into one string: two reply elements per entry instead of about twenty
(a CloudEvent's fields), which redis-py would parse one by one; caught up, a blocking
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

The work queue's writes are one script each: a reservation moves the due delayed jobs
and the expired leases (at most 1,000 of each per call) before it pops ready jobs, so a
job delayed by an hour costs a reservation nothing. Leases and "is it due" use the
server's clock (``TIME``), due times the dispatcher's (see ``_queue.py``).

Needs Redis 7.0 or later (``XADD`` with ``0-*``). Scripts touch several keys, so on
Redis Cluster put the whole bus in one hash slot with a braced prefix
(``prefix={afterward}:``).

The code: ``_log.py`` (:class:`RedisLog`), ``_member.py`` (a consumer group member),
``_client.py`` (the clients per event loop and error translation), ``_codec.py`` (keys and
encodings, no I/O), ``_retention.py`` (trimming, pruning and storage sizes),
``_queue.py`` (:class:`RedisQueue`) and ``_queue_codec.py`` (its keys
and encodings), ``_scripts.py`` and ``scripts/*.lua`` (the Lua).
"""

from __future__ import annotations

from collections.abc import Callable

from afterward.events._backend import Backend
from afterward.events.backends.redis._log import RedisLog
from afterward.events.backends.redis._queue import RedisQueue

__all__ = ["RedisLog", "RedisQueue", "open_backend"]


def open_backend(url: str, open_store: Callable[[str], Backend]) -> Backend:
    """The backend of a ``redis://`` URL: the log is its own state store, and the work
    queue shares its clients.

    Raises:
        ConfigError: redis-py rejects the URL.
    """
    log = RedisLog(url)
    return Backend.of(log, jobs=RedisQueue(log.clients))
