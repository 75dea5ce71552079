"""Events on the wire: CloudEvents 1.0 in binary content mode, and foreign records.

An afterward event is written as a record whose value is the event's ``data`` as JSON
(``content-type: application/json``), whose key is the event's key, and whose headers
carry the CloudEvents attributes::

    ce_specversion   1.0
    ce_id            the event ID
    ce_type          the topic
    ce_source        the app (EventBus(..., source=...), default the program's name)
    ce_time          occurred_at, RFC 3339
    ce_correlationid the correlation ID                       (extension)
    ce_eventversion  the key version, when given              (extension)
    traceparent      W3C trace context, when a trace is active
    tracestate       its vendor state, when there is one
    content-type     application/json

The event's own ``headers`` travel as further record headers (names that would clash
with the ones above are refused at publish). Every backend stores these records; Kafka
headers and Redis stream fields are them, byte for byte.

Reading, a record afterward did not write is an event too (:func:`decode`): binary
CloudEvents give their attributes; a structured CloudEvent (``application/cloudevents+json``
or a JSON object with ``specversion``, ``id`` and ``type``) gives its attributes and
``data``; any other JSON value is the data of an event whose ID is ``ce_id`` when the
record has one, else ``<topic>:<partition>:<offset>`` (stable across redeliveries). A
value that is not JSON (or not UTF-8) raises :class:`UndecodableRecord`; a raw
subscription gets the bytes as they are.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from afterward._exceptions import PublishError
from afterward.events._envelope import Event
from afterward.events._records import AppendRecord, Headers, StoredEvent

__all__ = [
    "RESERVED_HEADERS",
    "UndecodableRecord",
    "check_headers",
    "decode",
    "decode_stored",
    "encode",
    "encode_data",
    "loads",
    "pack_headers",
    "record_of",
    "self_describing",
    "stand_in",
    "unpack_headers",
]

SPEC = b"1.0"
JSON = b"application/json"
STRUCTURED = "application/cloudevents+json"
#: Headers afterward writes itself: an event's own headers may not use these names (nor
#: any ``ce_`` name: the CloudEvents binary-mode attribute prefix).
RESERVED_HEADERS = frozenset({"content-type", "traceparent", "tracestate"})

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()

try:  # afterward[fast]: msgspec decodes the JSON afterward writes 2.4-4.9x faster
    from msgspec import DecodeError as _FastDecodeError
    from msgspec.json import Decoder as _FastDecoder

    _fast_decode: Any = _FastDecoder().decode
except ImportError:  # pragma: no cover - depends on the environment
    _fast_decode = None
    _FastDecodeError = ValueError  # type: ignore[assignment,misc]


class UndecodableRecord(ValueError):
    """A record whose value cannot be read as an event (not JSON, not UTF-8...)."""


def check_headers(topic: str, headers: Mapping[str, str]) -> None:
    """Refuse event headers that would clash with the CloudEvents ones.

    Raises:
        PublishError: a name starting with ``ce_`` or one of :data:`RESERVED_HEADERS`.
    """
    for name in headers:
        lowered = name.lower()
        if lowered.startswith("ce_") or lowered in RESERVED_HEADERS:
            raise PublishError(
                f"header {name!r} is reserved for the CloudEvents attributes afterward "
                "writes (ce_*, content-type, traceparent, tracestate)",
                topic=topic,
            )


def encode_data(topic: str, data: Any) -> bytes:
    """``data`` as compact UTF-8 JSON.

    Raises:
        PublishError: it is not JSON-serializable (a lone surrogate included).
    """
    try:
        return _encoder.encode(data).encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (a lone surrogate) too
        raise PublishError(
            f"event data for topic {topic!r} is not JSON-serializable: {exc}", topic=topic
        ) from exc


def encode(event: Event, source: str) -> tuple[bytes, Headers]:
    """The record value and headers of ``event`` (see the module docstring); its
    ``traceparent``/``tracestate``, when set, become those headers.

    Args:
        event: the event.
        source: ``ce_source``.

    Raises:
        PublishError: the data is not JSON-serializable.
    """
    value = encode_data(event.topic, event.data)
    headers: list[tuple[str, bytes]] = [
        ("ce_specversion", SPEC),
        ("ce_id", event.id.encode()),
        ("ce_type", event.topic.encode()),
        ("ce_source", source.encode()),
        ("ce_time", event.occurred_at.isoformat().encode()),
        ("content-type", JSON),
    ]
    if event.correlation_id is not None:
        headers.append(("ce_correlationid", event.correlation_id.encode()))
    if event.version is not None:
        headers.append(("ce_eventversion", str(event.version).encode()))
    if event.traceparent is not None:
        headers.append(("traceparent", event.traceparent.encode()))
        if event.tracestate:
            headers.append(("tracestate", event.tracestate.encode()))
    headers += [(name, value.encode()) for name, value in event.headers.items()]
    return value, tuple(headers)


def _text(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise UndecodableRecord(f"a header or key is not UTF-8: {exc}") from exc


def _time(value: str | None, fallback: float | None) -> datetime:
    if value:
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass  # a foreign producer's odd time: the record's own timestamp instead
    if fallback is not None:
        return datetime.fromtimestamp(fallback, UTC)
    return datetime.now(UTC)


def _version(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None  # not afterward's: a foreign producer's own notion of version


def loads(value: bytes) -> Any:
    """JSON that afterward wrote, from UTF-8 bytes (msgspec when installed)."""
    if _fast_decode is not None:
        return _fast_decode(value)
    return _decoder.decode(str(value, "utf-8"))


def _json(value: bytes, what: str) -> Any:
    if _fast_decode is not None:
        try:
            return _fast_decode(value)
        except _FastDecodeError:
            pass  # the stdlib's word on it (and its message, and NaN/Infinity) below
    try:
        return _decoder.decode(str(value, "utf-8"))
    except UnicodeDecodeError as exc:
        raise UndecodableRecord(f"the {what} is not UTF-8: {exc}") from exc
    except ValueError as exc:
        raise UndecodableRecord(f"the {what} is not JSON: {exc}") from exc


#: Headers that are CloudEvents attributes without the ``ce_`` prefix.
_UNPREFIXED = {
    "content-type": "datacontenttype",
    "traceparent": "traceparent",
    "tracestate": "tracestate",
}


def _attributes(headers: Iterable[tuple[str, bytes]]) -> tuple[dict[str, str], dict[str, str]]:
    """(CloudEvents attributes without their ``ce_`` prefix, the other headers).

    The hot path of every read: one pass, names already lower-case (as afterward and
    the CloudEvents bindings write them) taken without lowering them again.
    """
    attributes: dict[str, str] = {}
    others: dict[str, str] = {}
    try:
        for name, raw in headers:
            value = raw.decode() if isinstance(raw, bytes) else (raw or "")
            if name.startswith("ce_"):
                attributes[name[3:]] = value
                continue
            lowered = name.lower()
            if lowered.startswith("ce_"):
                attributes[lowered[3:]] = value
            elif lowered in _UNPREFIXED:
                attributes[_UNPREFIXED[lowered]] = value
            else:
                others[name] = value
    except UnicodeDecodeError as exc:
        raise UndecodableRecord(f"a header or key is not UTF-8: {exc}") from exc
    return attributes, others


def decode(
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    headers: Iterable[tuple[str, bytes]],
    key: bytes | str | None = None,
    timestamp: float | None = None,
    *,
    raw: bool = False,
) -> Event:
    """The event a record holds: afterward's own, a binary or structured CloudEvent, or
    a plain JSON value (see the module docstring).

    With ``raw``, ``data`` is the value's bytes, undecoded.

    Raises:
        UndecodableRecord: the value (or a header, or the key) cannot be read.
    """
    attributes, others = _attributes(headers)
    data: Any = value if raw else None
    if not raw:
        if "specversion" in attributes or attributes.get("datacontenttype") != STRUCTURED:
            data = _json(value, "value") if value else None
        else:
            data = _json(value, "structured CloudEvent")
        if "specversion" not in attributes and _structured(data):
            return _from_structured(topic, data, key, timestamp, others)
    return Event(
        id=attributes.get("id") or f"{topic}:{partition}:{offset}",
        topic=topic,
        data=data,
        key=_text(key),
        version=_version(attributes.get("eventversion")),
        correlation_id=attributes.get("correlationid"),
        occurred_at=_time(attributes.get("time"), timestamp),
        headers=others,
        traceparent=attributes.get("traceparent"),
        tracestate=attributes.get("tracestate"),
    )


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def _structured(data: Any) -> bool:
    return isinstance(data, dict) and all(k in data for k in ("specversion", "id", "type"))


def _from_structured(
    topic: str,
    envelope: dict[str, Any],
    key: bytes | str | None,
    timestamp: float | None,
    headers: dict[str, str],
) -> Event:
    data = envelope.get("data")
    if data is None and "data_base64" in envelope:
        data = envelope["data_base64"]  # binary data stays as its base64 text
    return Event(
        id=str(envelope["id"]),
        topic=topic,
        data=data,
        key=_text(key),
        version=_version(envelope.get("eventversion")),
        correlation_id=None
        if envelope.get("correlationid") is None
        else str(envelope["correlationid"]),
        occurred_at=_time(envelope.get("time"), timestamp),
        headers=headers,
        traceparent=_optional_text(envelope.get("traceparent")),
        tracestate=_optional_text(envelope.get("tracestate")),
    )


def stand_in(stored: StoredEvent, *, attempt: int = 1) -> Event:
    """The event shown for a record that cannot be read (a dead letter's): its ID where
    it sat, its key and headers with the bytes that are not UTF-8 replaced, its
    CloudEvents attributes (``ce_source`` says who wrote it) among those headers, and
    its value as text."""
    key = stored.key
    return Event(
        id=f"{stored.topic}:{stored.partition}:{stored.offset}",
        topic=stored.topic,
        data=stored.value.decode(errors="replace"),
        key=key.decode(errors="replace") if isinstance(key, bytes) else key,
        headers={name: raw.decode(errors="replace") for name, raw in stored.headers},
        attempt=attempt,
    )


def record_of(event: Event, source: str) -> AppendRecord:
    """The record that carries ``event`` (see :func:`encode`).

    Raises:
        PublishError: the data is not JSON-serializable.
    """
    value, headers = encode(event, source)
    return AppendRecord(event, value, headers)


def decode_stored(stored: StoredEvent, *, raw: bool = False, attempt: int = 1) -> Event:
    """The event ``stored`` holds (the backend's own decoding, when it did one).

    Raises:
        UndecodableRecord: the record cannot be read as an event.
    """
    if stored.event is not None:
        event = stored.event if not raw else replace(stored.event, data=stored.value)
    else:
        event = decode(
            stored.topic,
            stored.partition,
            stored.offset,
            stored.value,
            stored.headers,
            stored.key,
            stored.timestamp,
            raw=raw,
        )
    if attempt != 1:
        event.attempt = attempt
    return event


def pack_headers(headers: Headers) -> str:
    """``headers`` as compact JSON text, for a backend that stores them in one column or
    field: ``[[name, value]]``, a value that is not UTF-8 as ``{"b64": ...}``."""
    packed: list[list[Any]] = []
    for name, value in headers:
        try:
            packed.append([name, value.decode()])
        except UnicodeDecodeError:
            packed.append([name, {"b64": base64.b64encode(value).decode()}])
    return _encoder.encode(packed)


def unpack_headers(text: str | bytes) -> Headers:
    """The headers :func:`pack_headers` wrote."""
    found = []
    for name, value in json.loads(text):
        raw = base64.b64decode(value["b64"]) if isinstance(value, dict) else value.encode()
        found.append((name, raw))
    return tuple(found)


def self_describing(stored: StoredEvent, source: str) -> StoredEvent:
    """``stored`` as a record that needs no backend to be read (a dead letter's): a
    backend's own decoded form (``stored.event``) becomes value and headers."""
    if stored.event is None:
        return stored
    value, headers = encode(stored.event, source)
    return replace(stored, value=value, headers=headers, event=None)
