"""``kafka://host:port[,host:port]``: the bus on Apache Kafka (``afterward[kafka]``, aiokafka).

What lives where:

- **Events** are Kafka records on the topic of the same name (after the optional
  ``prefix``): the event key is the record key, so per-key order is partition order
  (Kafka's murmur2 partitioner; a keyless event is placed by the hash of its ID, so a
  producer retrying the same ``id=`` lands on the same partition). A record is a
  CloudEvent in binary content mode (:mod:`afterward.events._wire`, ``docs/wire.md``):
  the value is the event's data as JSON, the attributes are ``ce_*`` headers. Missing
  topics are created with ``partitions`` partitions (4 by default).
- **Consumer groups** are Kafka consumer groups named like the afterward group: the
  broker shares a topic's partitions among the processes consuming it and rebalances
  as they come and go (:meth:`KafkaLog.join`, :mod:`._member`). A member losing a
  partition first commits its batch in flight; a member that died is replaced after
  ``session_timeout_ms``.
- **Positions, processed IDs, key versions and dead letters** live in a *state store*:
  any other afterward backend URL, given as ``store=`` (``redis://...`` for several
  machines, ``sqlite:///path`` for one). There is no default: a SQLite file in the
  working directory would split a group between directories. The store is bound to the
  Kafka cluster ID at connect and refuses another cluster (``BackendError``). A batch's
  positions, processed IDs and versions are one write there; members start each
  partition they are assigned at the store's position. The same offsets are then
  committed to the Kafka group in the background, for Kafka's own tools
  (``kafka-consumer-groups --describe`` shows them and the lag).
  Dead letters are also copied to the ``<topic>.dlq.<group>`` topic (a tombstone marks
  one retried or discarded) for Kafka-side tooling; the store's copy is the one
  listed, retried and discarded.
- **The work queue** (the ``queue`` job connection, :mod:`._queue`): ready jobs are
  records of ``afterward.jobs.<queue>``, whose partitions the worker processes share as
  the consumer group ``afterward.worker.<queue>``; each job's marks (attempts, lease,
  done, failed) and the jobs not due yet are in the state store's work queue.
- **Publishing**: concurrent appends of an event loop are written together, one record
  batch per partition per round; each append settles from its own partitions.

The modules: :mod:`._settings` (the URL, parsed once, and every client's options),
:mod:`._clients` (the aiokafka clients of each event loop, topic metadata),
:mod:`._producer` (appends), :mod:`._reader` (reads without a group, end offsets,
offsets by time), :mod:`._member` (a consumer group member), :mod:`._log`
(:class:`KafkaLog`, tying them together), :mod:`._queue` (:class:`KafkaQueue`) and
:mod:`._queue_member` (a worker group member).

URL options (query string): ``store=<url>`` (URL-encoded), ``prefix=`` (prepended to every
Kafka topic and group name, to share a cluster), ``partitions=`` (for created topics),
``queue_partitions=`` (for created work queue topics, 16),
``request_timeout_ms=`` (how long a publish waits for an unreachable broker before
:class:`~afterward.BackendUnavailable`, 40 s by default), ``session_timeout_ms=`` (10 s)
and ``rebalance_timeout_ms=`` (60 s) for the consumer groups, ``client_id=``.

Apache Kafka cannot append several records atomically without transactions, and
aiokafka's transactional producer is not used (several Kafka-compatible brokers reject
it): one ``publish`` is atomic, a ``publish_many`` batch is not.
"""

from __future__ import annotations

from collections.abc import Callable

from afterward.events._backend import Backend
from afterward.events._work_queue import JobLedger
from afterward.events.backends.kafka._log import KafkaLog
from afterward.events.backends.kafka._queue import KafkaQueue
from afterward.events.backends.kafka._settings import KafkaSettings

__all__ = ["KafkaLog", "KafkaQueue", "KafkaSettings", "open_backend"]


def open_backend(url: str, open_store: Callable[[str], Backend]) -> Backend:
    """The backend of a ``kafka://`` URL: the log in Kafka, the state in ``store=``, and
    the work queue in both when the store keeps job marks (memory, SQLite and Redis do).

    Raises:
        ConfigError: the URL is malformed, or its store is Kafka itself.
    """
    settings = KafkaSettings.parse(url)
    store = open_store(settings.store)
    log = KafkaLog(settings, store.state)
    ledger = store.queue
    jobs = None
    if isinstance(ledger, JobLedger):
        jobs = KafkaQueue(log.clients, log.errors, ledger, store.state)
    return Backend(log, store.state, jobs=jobs)
