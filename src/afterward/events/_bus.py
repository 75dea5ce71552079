"""The :class:`EventBus`: publish, subscribe, consume, and the operations around them.

Public methods do the shared work once (envelope, validation, schema, outbox,
idempotency, version guard, retries, dead letters, lag); the backend behind the URL
supplies the primitives of :class:`~afterward.events._backend.EventLog`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from afterward._context import correlation_id, new_correlation_id
from afterward._exceptions import ConfigError, NotFoundError, PublishError
from afterward._stats import incr
from afterward.events._backend import AppendRecord, ConnectContext
from afterward.events._consumers import Consumers
from afterward.events._envelope import MAX_EVENT_BYTES, Event, encode_event, validate_topic
from afterward.events._schema import SchemaRegistry

if TYPE_CHECKING:
    from afterward.events._outbox import OutboxStore
    from afterward.events._queue import FailedJob
from afterward.events.backends import open_backend

__all__ = ["EventBus"]

DEFAULT_URL = "sqlite:///afterward.db"


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


class EventBus(Consumers, ConnectContext):
    """A durable event bus with consumer groups. See ``docs/events.md``.

    Example:
        >>> bus = EventBus("sqlite:///shop.db")
        >>> @bus.subscribe("order.completed", group="billing")
        ... async def invoice(event: Event) -> None: ...
        >>> await bus.publish("order.completed", {"order_id": 7}, key="order-7")
        >>> await bus.drain()

    Args:
        url: ``sqlite:///path`` (default ``sqlite:///afterward.db`` in the working
            directory), ``memory://`` (private to this bus), ``kafka://...``, ``redis://...``.
        max_event_bytes: cap on one encoded event (1 MiB by default).
        batch_size: events a consumer reads at once (memory stays bounded by it).
        poll_interval: seconds an idle consumer waits before looking again (events
            published through this bus wake it at once).
        claim_ttl: seconds a consumer's claim on a (group, topic) lasts without renewal;
            another process takes over after that (SQLite).
        outbox: write events published inside an open database transaction to that
            database's outbox (relayed after commit) instead of the bus directly.
        keep_history: record every group's attempts for :meth:`history` (on backends
            that keep them); ``False`` saves that write, a quarter to a third of the
            SQLite consumer's throughput.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        max_event_bytes: int = MAX_EVENT_BYTES,
        batch_size: int = 500,
        poll_interval: float = 0.05,
        claim_ttl: float = 30.0,
        outbox: bool = True,
        keep_history: bool = True,
    ) -> None:
        for name, value in (("max_event_bytes", max_event_bytes), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        for name, seconds in (("poll_interval", poll_interval), ("claim_ttl", claim_ttl)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise ConfigError(f"{name} must be seconds > 0, got {seconds!r}")
        if url is not None and not isinstance(url, str):
            raise ConfigError(f"a bus URL must be a str, got {url!r}")
        self.url = url or os.environ.get("AFTERWARD_BUS") or DEFAULT_URL
        self._log = open_backend(self.url)
        super().__init__(self._log)
        self.max_event_bytes = max_event_bytes
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.claim_ttl = claim_ttl
        self.outbox = outbox
        self.keep_history = keep_history
        self._schemas = SchemaRegistry()
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._outboxes: dict[object, OutboxStore] = {}
        self._stopping = False
        self._claimed_until: dict[tuple[str, str, str], float] = {}

    def __repr__(self) -> str:
        return f"<EventBus {self.url}>"

    @property
    def _outbox_address(self) -> str:
        """The bus an outbox row belongs to: its URL, except for a private ``memory://``
        store, which no other bus (nor a later process) may relay into."""
        if self.url.startswith("memory://") and not self.url[len("memory://") :].strip("/"):
            return f"memory://private-{self._owner}"
        return self.url

    # -- lifecycle --------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect the backend (publishing and consuming also connect on first use)."""
        await self._log.connect()

    async def aclose(self) -> None:
        """Close the backend's connections."""
        await self._log.aclose()

    # -- publishing -------------------------------------------------------------------

    def schema(self, topic: str, schema: object, *, force: bool = False) -> None:
        """Check every event published to ``topic`` against ``schema`` from now on.

        Args:
            topic: the topic.
            schema: a JSON Schema dict, or a pydantic model class.
            force: replace a registered schema even if the new one is incompatible.

        Raises:
            ConfigError: the schema is invalid, or incompatible with the registered one
                (a newly required field, a changed type) and ``force`` is false.
        """
        validate_topic(topic)
        self._schemas.register(topic, schema, force=force)

    def _draft(
        self,
        topic: str,
        data: Any,
        key: str | None,
        version: int | None,
        id: str | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[Event, AppendRecord]:
        validate_topic(topic)
        _check_draft(topic, key, version, id, headers)
        self._schemas.check(topic, data)
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
        payload = encode_event(event)
        if len(payload) > self.max_event_bytes:
            raise PublishError(
                f"event for {topic!r} is {len(payload)} bytes encoded, over the "
                f"{self.max_event_bytes}-byte cap",
                topic=topic,
            )
        return event, AppendRecord(
            topic, key, event.id, event.occurred_at.timestamp(), payload, event.correlation_id
        )

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
        event, record = self._draft(topic, data, key, version, id, headers)
        await self._append([record])
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
        event, record = self._draft(topic, data, key, version, id, headers)
        if self._to_outbox([record]):
            return event
        self._sync(self._append([record], outbox=False))
        return event

    async def publish_many(self, topic: str, items: Iterable[Mapping[str, Any]]) -> list[Event]:
        """Publish several events to ``topic`` at once: all are written or none.

        Args:
            topic: the topic.
            items: mappings with ``data`` and optionally ``key``, ``version``, ``id``,
                ``headers`` (the arguments of :meth:`publish`).
        """
        validate_topic(topic)
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            raise PublishError(
                f"publish_many needs an iterable of mappings, got {items!r}", topic=topic
            )
        drafts = []
        for item in items:
            if not isinstance(item, Mapping) or "data" not in item:
                raise PublishError(
                    f"publish_many items need a 'data' entry, got {item!r}", topic=topic
                )
            unknown = set(item) - {"data", "key", "version", "id", "headers"}
            if unknown:
                raise PublishError(f"unknown publish_many fields {sorted(unknown)}", topic=topic)
            drafts.append(
                self._draft(
                    topic,
                    item["data"],
                    item.get("key"),
                    item.get("version"),
                    item.get("id"),
                    item.get("headers"),
                )
            )
        if drafts:
            await self._append([record for _, record in drafts])
        return [event for event, _ in drafts]

    def _to_outbox(self, records: list[AppendRecord]) -> bool:
        if not self.outbox:
            return False
        from afterward.events._outbox import write_to_outbox

        return write_to_outbox(self, records)

    async def relay_outbox(self, database: Any = None) -> int:
        """Relay events left in outbox tables (e.g. by a process that died after commit).

        Args:
            database: a SQLAlchemy engine or sessionmaker, or a Django database alias,
                to relay from (and remember); by default every database this bus has
                written outbox rows to in this process. ``run()`` calls it at start.

        Returns:
            How many events were moved to the bus.
        """
        from afterward.events._outbox import relay, store_for

        if database is not None:
            store = store_for(database)
            self._outboxes[store.ident] = store
        moved = 0
        for store in list(self._outboxes.values()):
            moved += await asyncio.to_thread(relay, self, store)
        return moved

    async def _append(self, records: list[AppendRecord], *, outbox: bool = True) -> None:
        if outbox and self.outbox:
            from afterward.events._outbox import write_to_outbox_async

            if await write_to_outbox_async(self, records):
                return
        await self._log.append(records)
        incr("events.published", len(records))
        for loop, waker in list(self._wakers):
            if loop.is_closed():
                self._wakers.discard((loop, waker))
            else:
                loop.call_soon_threadsafe(waker.set)

    # -- jobs (the durable "queue" connection) ----------------------------------------

    def use_for_jobs(self, queue: str = "default") -> None:
        """Make this bus the ``"queue"`` job connection: ``dispatch(connection="queue")``
        publishes to ``queue``, run by ``afterward worker --queue NAME``."""
        from afterward.events._queue import use_for_jobs

        use_for_jobs(self, queue)

    async def failed_jobs_async(self, queue: str | None = None) -> list[FailedJob]:
        """Async twin of :meth:`failed_jobs`."""
        from afterward.events._queue import failed_jobs

        return await failed_jobs(self, queue)

    def failed_jobs(self, queue: str | None = None) -> list[FailedJob]:
        """Queue jobs that used up their tries (of ``queue`` when given), oldest first."""
        return self._sync(self.failed_jobs_async(queue))

    async def retry_failed_job(self, failed_id: str) -> None:
        """Put a failed job back on its queue with all its tries.

        Raises:
            NotFoundError: no failed job has that ID.
        """
        from afterward.events._queue import retry_failed_job

        await retry_failed_job(self, failed_id)

    async def discard_failed_job(self, failed_id: str) -> None:
        """Delete a failed job for good.

        Raises:
            NotFoundError: no failed job has that ID.
        """
        if not any(job.id == failed_id for job in await self.failed_jobs_async()):
            raise NotFoundError(f"no failed job with ID {failed_id!r}")
        await self.discard_dead_letter(failed_id)

    async def event_count(self, topic: str) -> int:
        """How many events ``topic`` holds (every partition)."""
        validate_topic(topic)
        return sum((await self._log.end_offsets(topic)).values())

    def event_count_sync(self, topic: str) -> int:
        """Sync twin of :meth:`event_count`."""
        return self._sync(self.event_count(topic))
