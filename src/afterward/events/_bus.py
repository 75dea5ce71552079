"""The :class:`EventBus`: publish, subscribe, consume, and the operations around them.

Its public methods are thin: the work is done once, on the bus's
:class:`~afterward.events._core.BusCore`, by :mod:`._publish` (envelope, validation,
schema, outbox), :mod:`._consumers` and :mod:`._batch` (idempotency, version guard,
retries, dead letters), :mod:`._admin` (lag, replay, dead letters, flows) and
:mod:`._queue` (jobs); the backend behind the URL supplies the primitives of
:mod:`afterward.events._protocols`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from afterward._exceptions import ConfigError
from afterward.events._admin import Operating
from afterward.events._consumers import Consuming
from afterward.events._core import BusCore, BusSettings
from afterward.events._envelope import MAX_EVENT_BYTES, validate_topic
from afterward.events._protocols import ConnectContext
from afterward.events._prune import check_retention, prune
from afterward.events._publish import Publishing
from afterward.events._queue import (
    FailedJob,
    add_worker,
    discard_failed_job,
    failed_jobs,
    queue_stats,
    retry_failed_job,
    use_for_jobs,
    worker_spec,
)
from afterward.events._records import Pruned, QueueDepth, TopicStorage
from afterward.events._worker import Worker
from afterward.events.backends import open_backend

__all__ = ["DEFAULT_URL", "EventBus", "subscribe_worker"]

DEFAULT_URL = "sqlite:///afterward.db"
#: Events are kept a week unless a bus or topic says otherwise.
DEFAULT_RETENTION = timedelta(days=7)


def default_source() -> str:
    """The program's name: the stem of ``sys.argv[0]`` (``gunicorn``, ``manage``,
    ``shop``), else ``python``."""
    program = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    return program if program and program not in ("-c", "-m") else "python"


def _check_settings(**settings: object) -> None:
    for name in ("max_event_bytes", "batch_size"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    for name in ("poll_interval", "claim_ttl"):
        seconds = settings[name]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ConfigError(f"{name} must be seconds > 0, got {seconds!r}")


class EventBus(Publishing, Consuming, Operating, ConnectContext):
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
        source: the CloudEvents ``ce_source`` of the events this bus publishes (the app
            or service name); default the program's name (``sys.argv[0]``'s stem).
        retention: how long events are kept (7 days by default; ``None``: forever);
            :meth:`retention` sets it per topic. Processed IDs, key versions and flow
            history go with them; dead letters and failed jobs stay. See
            ``docs/events.md``.
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
        source: str | None = None,
        retention: timedelta | None = DEFAULT_RETENTION,
    ) -> None:
        if source is None:
            source = default_source()
        elif not isinstance(source, str) or not source or len(source) > 200:
            raise ConfigError(f"source must be a non-empty str of <= 200 chars, got {source!r}")
        _check_settings(
            max_event_bytes=max_event_bytes,
            batch_size=batch_size,
            poll_interval=poll_interval,
            claim_ttl=claim_ttl,
        )
        if url is not None and not isinstance(url, str):
            raise ConfigError(f"a bus URL must be a str, got {url!r}")
        self.url = url or os.environ.get("AFTERWARD_BUS") or DEFAULT_URL
        settings = BusSettings(
            max_event_bytes,
            batch_size,
            poll_interval,
            claim_ttl,
            outbox,
            keep_history,
            source,
            check_retention(retention),
        )
        self._core = BusCore(self.url, open_backend(self.url), settings)

    def __repr__(self) -> str:
        return f"<EventBus {self.url}>"

    @property
    def settings(self) -> BusSettings:
        """The options this bus was made with (read-only)."""
        return self._core.settings

    @property
    def keep_history(self) -> bool:
        """Whether the bus records every group's attempts (``keep_history=``)."""
        return self._core.settings.keep_history

    # -- lifecycle --------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect the backend (publishing and consuming also connect on first use)."""
        await self._core.backend.connect()

    async def aclose(self) -> None:
        """Close the backend's connections."""
        await self._core.backend.aclose()

    # -- jobs (the durable "queue" connection) ----------------------------------------

    def use_for_jobs(self, queue: str = "default") -> None:
        """Make this bus the ``"queue"`` job connection: ``dispatch(connection="queue")``
        enqueues on ``queue`` in this bus's backend, run by ``afterward worker --queue
        NAME``.

        Raises:
            ConfigError: a bad queue name.
        """
        use_for_jobs(self._core, queue)

    def worker(
        self,
        queue: str = "default",
        *,
        concurrency: int = 4,
        lease: float = 30.0,
        grace: float = 30.0,
        on_depth: Callable[[QueueDepth], None] | None = None,
    ) -> Worker:
        """A worker for ``queue``'s jobs: ``await worker.run()`` until ``worker.stop()``
        (what ``afterward worker`` runs).

        Args:
            queue: the queue.
            concurrency: jobs run at once.
            lease: seconds a running job stays this worker's without renewal.
            grace: seconds ``stop()`` gives running jobs before handing them back.
            on_depth: called with the queue's counts whenever they change.

        Raises:
            ConfigError: a bad option, or the backend has no work queue.
        """
        spec = worker_spec(queue, concurrency, lease, grace)
        return Worker(
            self._core,
            spec.queue,
            concurrency=spec.concurrency,
            lease=spec.lease,
            grace=spec.grace,
            on_depth=on_depth,
        )

    async def queue_stats(self, queue: str | None = None) -> dict[str, QueueDepth]:
        """Jobs per state (ready, delayed, running by worker, failed), per queue."""
        return await queue_stats(self._core, queue)

    def queue_stats_sync(self, queue: str | None = None) -> dict[str, QueueDepth]:
        """Sync twin of :meth:`queue_stats`."""
        return self._core.sync(queue_stats(self._core, queue))

    async def failed_jobs_async(self, queue: str | None = None) -> list[FailedJob]:
        """Async twin of :meth:`failed_jobs`."""
        return await failed_jobs(self._core, queue)

    def failed_jobs(self, queue: str | None = None) -> list[FailedJob]:
        """Queue jobs that used up their tries (of ``queue`` when given), oldest first."""
        return self._core.sync(failed_jobs(self._core, queue))

    async def retry_failed_job(self, failed_id: str) -> None:
        """Put a failed job back on its queue with all its tries, due now.

        Raises:
            NotFoundError: no failed job has that ID.
        """
        await retry_failed_job(self._core, failed_id)

    async def discard_failed_job(self, failed_id: str) -> None:
        """Delete a failed job for good.

        Raises:
            NotFoundError: no failed job has that ID.
        """
        await discard_failed_job(self._core, failed_id)

    # -- retention ----------------------------------------------------------------------

    def retention(self, topic: str, keep: timedelta | None) -> None:
        """Keep ``topic``'s events for ``keep`` (``None``: forever), instead of the bus's
        ``retention``. Applied by the next pruning pass (on Kafka: the topic's
        ``retention.ms``).

        Raises:
            PublishError: a bad topic name.
            ConfigError: ``keep`` is not a positive timedelta or ``None``.
        """
        validate_topic(topic)
        self._core.retentions[topic] = check_retention(keep, f"retention of {topic!r}")

    async def prune(self) -> Pruned:
        """Run a pruning pass now (``run()`` prunes in the background); what it removed."""
        return await prune(self._core)

    def prune_sync(self) -> Pruned:
        """Sync twin of :meth:`prune`."""
        return self._core.sync(prune(self._core))

    async def storage(self) -> dict[str, TopicStorage]:
        """Per topic: events stored, their size in bytes, the oldest one's time (``{}`` on
        a backend that cannot tell: Kafka)."""
        prunable = self._core.backend.prunable
        return await prunable.storage() if prunable is not None else {}

    def storage_sync(self) -> dict[str, TopicStorage]:
        """Sync twin of :meth:`storage`."""
        return self._core.sync(self.storage())

    async def event_count(self, topic: str) -> int:
        """How many events ``topic`` holds (every partition)."""
        validate_topic(topic)
        return sum((await self._core.backend.log.end_offsets(topic)).values())

    def event_count_sync(self, topic: str) -> int:
        """Sync twin of :meth:`event_count`."""
        return self._core.sync(self.event_count(topic))


def subscribe_worker(
    bus: EventBus,
    queue: str = "default",
    concurrency: int = 1,
    *,
    lease: float = 30.0,
    grace: float = 30.0,
) -> str:
    """Have ``bus.run()`` (and ``drain()``) run the jobs of ``queue``; return the
    worker group's name (``afterward.worker.<queue>``: ``run(groups=[...])`` selects it).

    What ``afterward worker`` does, in your own process: handy in tests and in apps
    that run their own worker. ``drain()`` returns once the queue has nothing ready,
    delayed or running: it waits for delayed jobs and retries.

    Example:
        >>> bus.use_for_jobs("emails")           # dispatch(connection="queue") goes here
        >>> subscribe_worker(bus, "emails")
        'afterward.worker.emails'
        >>> await bus.drain()                    # runs the jobs dispatched so far

    Raises:
        ConfigError: a bad queue name, concurrency, lease or grace, or a worker is
            already subscribed for that queue on this bus.
    """
    return add_worker(bus._core, worker_spec(queue, concurrency, lease, grace))
