"""Pure mappings between afterward's records and what Redis stores: no I/O, no client.

The bus URL to a redis-py URL and a key prefix, offsets to stream IDs and back, a
commit's :class:`~afterward.events._records.Done` items to the scripts' JSON argument,
dead letters to hashes and back, and the key of everything (:class:`Keys`). The layout
itself is described in :mod:`afterward.events.backends.redis`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from afterward.events._records import (
    AppendRecord,
    Done,
    StoredDeadLetter,
    StoredEvent,
    StoredSchema,
)
from afterward.events._wire import pack_headers, unpack_headers

__all__ = [
    "DEFAULT_PREFIX",
    "Keys",
    "dense",
    "done_json",
    "entry_fields",
    "event",
    "json_list",
    "letter",
    "letter_fields",
    "offset",
    "pairs",
    "positions",
    "registered",
    "registration",
    "schema_json",
    "split_url",
    "stored_schema",
    "stream_id",
    "unpack_fields",
]

DEFAULT_PREFIX = "afterward:"


def split_url(url: str) -> tuple[str, str]:
    """Return (the URL redis-py gets, the key prefix) for a ``redis://`` bus URL.

    ``prefix`` is afterward's query parameter; every other one is redis-py's and stays.
    """
    parts = urlsplit(url)
    prefix = DEFAULT_PREFIX
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            prefix = value
        else:
            kept.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


@dataclass(frozen=True, slots=True)
class Keys:
    """Every key of one bus, under its prefix (see the package docstring)."""

    prefix: str

    def stream(self, topic: str) -> str:
        """The topic's log (one stream, one partition)."""
        return f"{self.prefix}stream:{topic}"

    def pos(self, topic: str, group: str) -> str:
        """The group's committed position in the topic (hash partition -> offset)."""
        return f"{self.prefix}pos:{topic}:{group}"

    def done(self, group: str) -> str:
        """The group's processed event IDs (hash ID -> topic)."""
        return f"{self.prefix}done:{group}"

    def ver(self, topic: str, group: str) -> str:
        """The group's highest processed version per key of the topic."""
        return f"{self.prefix}ver:{topic}:{group}"

    def done_log(self, topic: str, group: str) -> str:
        """The group's commits on the topic, oldest first (a list of ``<server time>
        <done items as JSON>``): what retention prunes processed IDs and versions by."""
        return f"{self.prefix}done-log:{topic}:{group}"

    def state(self, group: str, topic: str) -> list[str]:
        """The position hash, processed IDs, key versions and the commit log (the first
        KEYS of the commit and rewind scripts)."""
        return [
            self.pos(topic, group),
            self.done(group),
            self.ver(topic, group),
            self.done_log(topic, group),
        ]

    def batches(self, topic: str, group: str) -> str:
        """The last batch begun per partition (hash partition -> ``start:end``)."""
        return f"{self.prefix}batches:{topic}:{group}"

    def deliveries(self, group: str) -> str:
        """Deliveries counted per event ID, of events being delivered again."""
        return f"{self.prefix}deliveries:{group}"

    def schemas(self, topic: str) -> str:
        """A topic's schema versions (hash version -> the version as JSON)."""
        return f"{self.prefix}schemas:{topic}"

    @property
    def schema_topics(self) -> str:
        """The topics that have schemas."""
        return f"{self.prefix}schema-topics"

    def claim(self, topic: str, group: str) -> str:
        """The member (or consume loop) consuming the group on the topic."""
        return f"{self.prefix}claim:{topic}:{group}"

    @property
    def groups(self) -> str:
        """The registered (group, topic) pairs."""
        return f"{self.prefix}groups"

    @property
    def dlq(self) -> str:
        """Dead-letter IDs sorted by failure time."""
        return f"{self.prefix}dlq"

    def letter(self, letter_id: str) -> str:
        """One dead letter (a hash)."""
        return f"{self.prefix}dlq:{letter_id}"


# Entry IDs are dense, 0-<offset + 1>: Redis numbers '0-*' appends from 0-1.
def stream_id(offset: int) -> str:
    """The stream entry ID of ``offset``."""
    return f"0-{offset + 1}"


def dense(entry_id: bytes) -> bool:
    """Whether ``entry_id`` is an offset's (``0-<n>``), not an automatic ID another
    client's ``XADD ... *`` gave (``<ms>-<seq>``: adopted before it is read)."""
    return entry_id.startswith(b"0-")


def offset(entry_id: bytes) -> int:
    """The offset of a stream entry ID."""
    return int(entry_id.split(b"-", 1)[1]) - 1


#: The field holding a record's value; the record's key is in ``key``.
DATA = b"data"
KEY = b"key"


def entry_fields(record: AppendRecord) -> list[tuple[str, bytes]]:
    """The stream entry of ``record``, in order: its headers (the CloudEvents attributes
    and the event's own), ``key`` when it has one, and its value in ``data``."""
    fields = list(record.headers)
    if record.key is not None:
        fields.append(("key", record.key.encode()))
    fields.append(("data", record.value))
    return fields


def event(
    topic: str, entry_id: bytes, fields: Sequence[Any] | Mapping[bytes, bytes]
) -> StoredEvent:
    """The record a stream entry holds (a topic is one partition, 0): ``data`` is its
    value, ``key`` its key, every other field a header."""
    items = (
        fields.items()
        if isinstance(fields, Mapping)
        else zip(fields[::2], fields[1::2], strict=True)
    )
    value = b""
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = []
    for name, raw in items:
        if name == DATA:
            value = raw
        elif name == KEY:
            key = raw
        else:
            headers.append((name.decode(errors="replace"), raw))
    text: str | bytes | None = key
    if key is not None:
        try:
            text = key.decode()
        except UnicodeDecodeError:
            text = key
    return StoredEvent(topic, 0, offset(entry_id), value, tuple(headers), text)


def unpack_fields(packed: bytes) -> list[bytes]:
    """An entry's fields as ``fetch.lua`` packs them (their lengths joined by ``,``, a
    newline, the fields end to end), as a flat list: name, value, name, value..."""
    head, _, body = packed.partition(b"\n")
    fields = []
    at = 0
    for size in map(int, head.split(b",")):
        fields.append(body[at : at + size])
        at += size
    return fields


def time_of(fields: Mapping[bytes, bytes]) -> float:
    """An entry's event time (``ce_time``), as POSIX seconds; 0 when it has none."""
    raw = fields.get(b"ce_time")
    if raw is None:
        return 0.0
    try:
        return datetime.fromisoformat(raw.decode()).timestamp()
    except ValueError:
        return 0.0


def pairs(positions: Mapping[int, int]) -> list[int]:
    """Positions flattened to partition, offset, partition, offset... (script ARGV)."""
    return [number for item in positions.items() for number in item]


def positions(stored: Mapping[bytes | str, bytes | str]) -> dict[int, int] | None:
    """A position hash as positions (``None`` for a missing hash)."""
    return {int(p): int(o) for p, o in stored.items()} if stored else None


def registration(group: str, topic: str) -> str:
    """The member of the ``groups`` set for (group, topic)."""
    return json.dumps([group, topic])


def registered(members: Iterable[bytes | str]) -> dict[str, list[str]]:
    """The ``groups`` set as group -> sorted topics, groups sorted."""
    found: dict[str, list[str]] = {}
    for group, topic in sorted(json.loads(m) for m in members):
        found.setdefault(group, []).append(topic)
    return found


def json_list(values: Sequence[str]) -> bytes:
    """Strings as one JSON array argument (the scripts ``cjson.decode`` it)."""
    return json.dumps(list(values), ensure_ascii=False).encode()


def done_json(done: Sequence[Done]) -> bytes:
    """``done`` as the JSON argument the commit scripts take (``_record_done.lua``).

    One argument instead of five per item: encoding thousands of arguments was a good
    part of a commit's cost.
    """
    items: list[list[Any]] = []
    for item in done:
        entry: list[Any] = [item.event_id, 1 if item.processed else 0]
        if item.key is not None and item.version is not None:
            entry += [item.key, str(item.version)]
        items.append(entry)
    return json.dumps(items, ensure_ascii=False).encode()


def letter_fields(letter: StoredDeadLetter) -> dict[str, Any]:
    """The hash of a dead letter (``failed_at`` as an exact POSIX timestamp): the record
    as it was read, with its headers as JSON text."""
    record = letter.record
    key = record.key.encode() if isinstance(record.key, str) else record.key
    return {
        "id": letter.id,
        "group": letter.group,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": b"" if key is None else b"k" + key,  # "": no key; else "k" + the key
        "ts": "" if record.timestamp is None else repr(record.timestamp),
        "value": record.value,
        "headers": pack_headers(record.headers),
        "error": letter.error,
        "traceback": letter.traceback,
        "attempts": letter.attempts,
        "failed_at": repr(letter.failed_at.timestamp()),
    }


def letter(row: Mapping[bytes, bytes]) -> StoredDeadLetter:
    """A dead letter from its hash (as :func:`letter_fields` wrote it)."""
    key = row[b"key"][1:].decode(errors="replace") if row[b"key"] else None
    ts = float(row[b"ts"]) if row[b"ts"] else None
    record = StoredEvent(
        row[b"topic"].decode(),
        int(row[b"partition"]),
        int(row[b"offset"]),
        row[b"value"],
        unpack_headers(row[b"headers"]),
        key,
        ts,
    )
    return StoredDeadLetter(
        id=row[b"id"].decode(),
        group=row[b"group"].decode(),
        record=record,
        error=row[b"error"].decode(),
        traceback=row[b"traceback"].decode(),
        attempts=int(row[b"attempts"]),
        failed_at=datetime.fromtimestamp(float(row[b"failed_at"]), UTC),
    )


def schema_json(schema: StoredSchema) -> str:
    """A schema version as the ``schemas:<topic>`` hash stores it."""
    return json.dumps(
        {
            "schema": schema.schema,
            "compatibility": schema.compatibility,
            "registered_at": schema.registered_at.timestamp(),
        }
    )


def stored_schema(topic: str, version: bytes | str, value: bytes | str) -> StoredSchema:
    """The :class:`StoredSchema` of one ``schemas:<topic>`` hash field."""
    fields = json.loads(value)
    return StoredSchema(
        topic,
        int(version),
        fields["schema"],
        fields["compatibility"],
        datetime.fromtimestamp(fields["registered_at"], UTC),
    )
