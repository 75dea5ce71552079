"""Publishing: validate, check the schema, build the envelope, append (or go to the
outbox); and the :class:`Publishing` methods of :class:`~afterward.EventBus`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from afterward import _telemetry
from afterward._context import correlation_id, new_correlation_id
from afterward._exceptions import PublishError
from afterward.events._core import BusCore
from afterward.events._envelope import Event, validate_topic
from afterward.events._outbox import relay, store_for, write_to_outbox
from afterward.events._records import AppendRecord, StoredSchema
from afterward.events._wire import check_headers, record_of

__all__ = ["Publishing", "draft", "relay_outboxes"]

_ITEM_FIELDS = frozenset({"data", "key", "version", "id", "headers"})


def _check_draft(topic: str, key: object, version: object, id: object, headers: object) -> None:
    if key is not None and not isinstance(key, str):
        raise PublishError(f"key must be a str or None, got {key!r}", topic=topic)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise PublishError(f"version must be an int or None, got {version!r}", topic=topic)
    if id is not None and (not isinstance(id, str) or not id or len(id) > 255):
        raise PublishError(f"id must be a non-empty str of <= 255 chars, got {id!r}", topic=topic)
    if headers is not None and not (
        isinstance(headers, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise PublishError(f"headers must map str to str, got {headers!r}", topic=topic)


def draft(
    core: BusCore,
    topic: str,
    data: Any,
    key: str | None = None,
    version: int | None = None,
    id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[Event, AppendRecord]:
    """The event ``publish`` would write, and its record: validated, schema-checked,
    encoded and within the size cap.

    Raises:
        PublishError: bad topic, key, version, id, headers or data; too large.
        SchemaError: the data does not match the topic's schema.
    """
    validate_topic(topic)
    _check_draft(topic, key, version, id, headers)
    if headers:
        check_headers(topic, headers)
    core.schemas.check(topic, data)
    tracing = _telemetry.tracing
    event = Event(
        id=id or new_correlation_id(),  # a UUID4, made cheaply
        topic=topic,
        data=data,
        key=key,
        version=version,
        correlation_id=correlation_id() or new_correlation_id(),
        occurred_at=datetime.now(UTC),
        headers=dict(headers or {}),
    )
    if tracing is not None:  # the publish span's context, for the consumers to continue
        event.traceparent, event.tracestate = tracing.current_trace()
    record = record_of(event, core.settings.source)
    size = len(record.value) + sum(len(n) + len(v) for n, v in record.headers)
    cap = core.settings.max_event_bytes
    if size > cap:
        raise PublishError(
            f"event for {topic!r} is {size} bytes encoded, over the {cap}-byte cap",
            topic=topic,
        )
    return event, record


def _drafts(core: BusCore, topic: str, items: Iterable[Mapping[str, Any]]) -> list[Any]:
    validate_topic(topic)
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise PublishError(
            f"publish_many needs an iterable of mappings, got {items!r}", topic=topic
        )
    drafts = []
    for item in items:
        if not isinstance(item, Mapping) or "data" not in item:
            raise PublishError(f"publish_many items need a 'data' entry, got {item!r}", topic=topic)
        unknown = set(item) - _ITEM_FIELDS
        if unknown:
            raise PublishError(f"unknown publish_many fields {sorted(unknown)}", topic=topic)
        drafts.append(
            draft(
                core,
                topic,
                item["data"],
                item.get("key"),
                item.get("version"),
                item.get("id"),
                item.get("headers"),
            )
        )
    return drafts


async def relay_outboxes(core: BusCore, database: Any = None) -> int:
    """Relay the outbox rows of ``database`` (remembered from now on) or, by default,
    of every database the bus wrote outbox rows to; return how many moved."""
    if database is not None:
        store = store_for(database)
        core.outboxes[store.ident] = store
    moved = 0
    for store in list(core.outboxes.values()):
        moved += await asyncio.to_thread(relay, core, store)
    return moved


def _producer(core: BusCore, topic: str) -> AbstractContextManager[_telemetry.SpanLike]:
    """The PRODUCER span of a publish to ``topic`` (only called while tracing)."""
    assert _telemetry.tracing is not None
    return _telemetry.tracing.publish(core.backend.scheme, topic)


class Publishing:
    """The publishing methods of :class:`~afterward.EventBus`."""

    _core: BusCore

    async def schema_async(
        self,
        topic: str,
        schema: object,
        *,
        compatibility: str = "backward",
        force: bool = False,
    ) -> StoredSchema:
        """Async twin of :meth:`schema`."""
        validate_topic(topic)
        return await self._core.schemas.register(topic, schema, compatibility, force=force)

    def schema(
        self,
        topic: str,
        schema: object,
        *,
        compatibility: str = "backward",
        force: bool = False,
    ) -> StoredSchema:
        """Register ``schema`` for ``topic`` in the bus's shared registry.

        Every publish to ``topic``, in any process on this bus, is checked against the
        latest version from then on (read from the backend, cached for a few seconds:
        see ``docs/events.md``). Registering the latest schema again stores nothing.

        Args:
            topic: the topic.
            schema: a JSON Schema dict, or a pydantic model class (stored as its JSON
                Schema; this process validates with the model itself).
            compatibility: ``"backward"`` (consumers of the new schema read old events),
                ``"forward"``, ``"full"`` or ``"none"``, as in Confluent's registry.
            force: store the new version even if it breaks ``compatibility``.

        Returns:
            The version stored (or the latest, when it was the same schema).

        Raises:
            ConfigError: the schema is invalid or the mode unknown.
            SchemaError: the schema breaks ``compatibility`` with the latest version;
                the message names the field. Nothing is stored.
        """
        return self._core.sync(
            self.schema_async(topic, schema, compatibility=compatibility, force=force)
        )

    async def schemas_async(self, topic: str | None = None) -> list[StoredSchema]:
        """Async twin of :meth:`schemas`."""
        if topic is not None:
            validate_topic(topic)
        return await self._core.schemas.versions(topic)

    def schemas(self, topic: str | None = None) -> list[StoredSchema]:
        """Every registered version of ``topic``'s schema (every topic's when ``None``),
        by topic then version."""
        return self._core.sync(self.schemas_async(topic))

    async def publish(
        self,
        topic: str,
        data: Any,
        key: str | None = None,
        version: int | None = None,
        id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Event:
        """Publish one event and return it.

        Inside an open SQLAlchemy/Django transaction the event goes to that database's
        outbox and reaches the bus after commit (never, on rollback).

        Raises:
            PublishError: bad topic name, key, version, id or headers, data that is not
                JSON, or an event over ``max_event_bytes``. Nothing is written.
            SchemaError: the data does not match the topic's schema. Nothing is written.
            BackendError: the backend failed.
        """
        if _telemetry.tracing is None:
            return await self._publish(topic, data, key, version, id, headers)
        with _producer(self._core, topic) as span:
            event = await self._publish(topic, data, key, version, id, headers)
            span.set_attribute("messaging.message.id", event.id)
            return event

    async def _publish(
        self,
        topic: str,
        data: Any,
        key: str | None,
        version: int | None,
        id: str | None,
        headers: Mapping[str, str] | None,
    ) -> Event:
        core = self._core
        if core.schemas.stale(validate_topic(topic)):
            await core.schemas.refresh(topic)
        event, record = draft(core, topic, data, key, version, id, headers)
        await core.append([record])
        return event

    def publish_sync(
        self,
        topic: str,
        data: Any,
        key: str | None = None,
        version: int | None = None,
        id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Event:
        """Sync twin of :meth:`publish` (the outbox works the same way)."""
        if _telemetry.tracing is not None:
            with _producer(self._core, topic) as span:
                event = self._publish_sync(topic, data, key, version, id, headers)
                span.set_attribute("messaging.message.id", event.id)
                return event
        return self._publish_sync(topic, data, key, version, id, headers)

    def _publish_sync(
        self,
        topic: str,
        data: Any,
        key: str | None,
        version: int | None,
        id: str | None,
        headers: Mapping[str, str] | None,
    ) -> Event:
        core = self._core
        if core.schemas.stale(validate_topic(topic)):
            core.sync(core.schemas.refresh(topic))
        event, record = draft(core, topic, data, key, version, id, headers)
        if core.settings.outbox and write_to_outbox(core, [record]):
            return event
        core.sync(core.append_now([record]))
        return event

    async def publish_many(self, topic: str, items: Iterable[Mapping[str, Any]]) -> list[Event]:
        """Publish several events to ``topic`` at once: all are written or none.

        Args:
            topic: the topic.
            items: mappings with ``data`` and optionally ``key``, ``version``, ``id``,
                ``headers`` (the arguments of :meth:`publish`).
        """
        if _telemetry.tracing is None:
            return await self._publish_many(topic, items)
        with _producer(self._core, topic) as span:
            events = await self._publish_many(topic, items)
            span.set_attribute("messaging.batch.message_count", len(events))
            return events

    async def _publish_many(self, topic: str, items: Iterable[Mapping[str, Any]]) -> list[Event]:
        validate_topic(topic)
        if self._core.schemas.stale(topic):
            await self._core.schemas.refresh(topic)
        drafts = _drafts(self._core, topic, items)
        if drafts:
            await self._core.append([record for _, record in drafts])
        return [event for event, _ in drafts]

    async def relay_outbox(self, database: Any = None) -> int:
        """Relay events left in outbox tables (e.g. by a process that died after commit).

        Args:
            database: a SQLAlchemy engine or sessionmaker, or a Django database alias,
                to relay from (and remember); by default every database this bus has
                written outbox rows to in this process. ``run()`` calls it at start.

        Returns:
            How many events were moved to the bus.
        """
        return await relay_outboxes(self._core, database)
