"""The event bus: durable events with consumer groups (section 5 of the contract).

``from afterward import EventBus, Event`` is the usual spelling; see ``docs/events.md``.
"""

from afterward.events._bus import EventBus, subscribe_worker
from afterward.events._envelope import DeadLetter, Event
from afterward.events._gauges import Gauges, read_gauges
from afterward.events._job_wire import (
    JOB_TOPIC_PREFIX,
    WORKER_GROUP_PREFIX,
    is_worker_group,
    job_topic,
    worker_group,
)
from afterward.events._queue import FailedJob
from afterward.events._reads import (
    has_failed_jobs,
    maybe_await,
    read_dead_letters,
    read_failed_jobs,
)
from afterward.events._records import Attempt, Pruned, QueueDepth, StoredSchema, TopicStorage
from afterward.events._worker import Worker

__all__ = [
    "JOB_TOPIC_PREFIX",
    "WORKER_GROUP_PREFIX",
    "Attempt",
    "DeadLetter",
    "Event",
    "EventBus",
    "FailedJob",
    "Gauges",
    "Pruned",
    "QueueDepth",
    "StoredSchema",
    "TopicStorage",
    "Worker",
    "has_failed_jobs",
    "is_worker_group",
    "job_topic",
    "maybe_await",
    "read_dead_letters",
    "read_failed_jobs",
    "read_gauges",
    "subscribe_worker",
    "worker_group",
]
