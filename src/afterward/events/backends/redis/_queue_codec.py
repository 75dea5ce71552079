"""The work queue's keys and encodings on Redis: pure, no I/O, no client.

The layout (also in :mod:`afterward.events.backends.redis`, and built again in Lua by
``scripts/_queue_lib.lua``, which must match :class:`QueueKeys`): one hash per job,
``job:<id>`` (job IDs are unique across queues, as on the other backends: the
failed-jobs store looks a job up by ID alone), and per queue the sorted sets
``jobs:<queue>:ready``, ``:delayed`` (by due time), ``:running`` (by lease deadline)
and ``:failed`` (by failure time); ``jobs:queues`` names the queues, ``jobs:seq``
counts enqueues.

The order of ready jobs (highest priority, then earliest due, then enqueue order) is a
string, the job's *rank*, so that it is exact for every int priority and every float
due time where a score (a double) is not: ready members are ``<rank>|<id>`` with score 0,
and Redis orders equal scores by member, bytewise. A rank is :func:`rank_prefix` (from
the priority and the due time) followed by the enqueue number in 16 hex digits.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from afterward.events._records import QueuedJob, StoredFailedJob, worker_died

__all__ = [
    "DIED",
    "QueueKeys",
    "QueueSets",
    "due_key",
    "failed",
    "job",
    "job_fields",
    "priority_key",
]


class QueueSets(NamedTuple):
    """One queue's sorted sets (in the order the reservation script takes them)."""

    ready: str
    delayed: str
    running: str
    failed: str


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The work queue's keys under a bus prefix (see the module docstring)."""

    prefix: str

    def job(self, job_id: str) -> str:
        """One job's hash."""
        return f"{self.prefix}job:{job_id}"

    def of(self, queue: str) -> QueueSets:
        """The queue's sorted sets."""
        return QueueSets(*(f"{self.prefix}jobs:{queue}:{part}" for part in QueueSets._fields))

    @property
    def queues(self) -> str:
        """The names of the queues that had jobs."""
        return f"{self.prefix}jobs:queues"

    @property
    def seq(self) -> str:
        """The enqueue counter."""
        return f"{self.prefix}jobs:seq"


# A queue's keys have two colons after ``jobs``, ``jobs:queues`` and ``jobs:seq`` one,
# and the last colon ends the queue's name (parts have none), so no queue name makes a
# key collide with another queue's or with these.

# ``worker_died`` as a Lua format of (attempt, tries): the text stays defined once.
_ATTEMPT, _TRIES = 10**30 + 1, 10**30 + 2
#: The error a lease that ran out on a job's last try stores (``string.format`` in Lua).
DIED = (
    worker_died(_ATTEMPT, _TRIES)
    .replace("%", "%%")
    .replace(str(_ATTEMPT), "%d")
    .replace(str(_TRIES), "%d")
)

_FLIP = (1 << 64) - 1
_SIGN = 1 << 63
_WIDTH = 8  # hex digits of a priority's length: exact below 16**(16**8) in magnitude


def priority_key(priority: int) -> str:
    """A string that sorts (bytewise) as the priorities in *descending* order.

    ``1``, the length of ``-priority`` in hex, its hex digits for zero and below;
    ``0``, the complemented length, the complemented digits above zero. Each key's length
    follows from its first nine characters, so a rank can go on after it.
    """
    value = -priority
    if value >= 0:
        digits = f"{value:x}" if value else ""
        return f"1{len(digits):0{_WIDTH}x}{digits}"
    width = len(f"{-value:x}")
    return f"0{16**_WIDTH - 1 - width:0{_WIDTH}x}{16**width - 1 + value:0{width}x}"


def due_key(due: float) -> str:
    """16 hex digits that sort (bytewise) as the due times: the IEEE 754 bits, sign
    bit flipped for positive numbers, all bits for negative ones."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", due))
    return f"{bits ^ _FLIP if bits & _SIGN else bits | _SIGN:016x}"


def job_fields(job: QueuedJob) -> list[bytes | str]:
    """The 10 script arguments of a new job (``add_job`` in ``_queue_lib.lua``)."""
    cid = job.correlation_id
    return [
        job.id,
        job.queue,
        job.payload,
        repr(job.due),
        due_key(job.due),
        str(job.priority),
        priority_key(job.priority),
        str(job.tries),
        cid or "",
        "0" if cid is None else "1",
    ]


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def job(values: Sequence[bytes | None], job_id: str, queue: str) -> QueuedJob:
    """A job from its payload, due, priority, tries and correlation ID, as stored."""
    payload, due, priority, tries, cid = values
    assert payload is not None and due is not None and priority is not None
    assert tries is not None
    return QueuedJob(job_id, queue, payload, float(due), int(priority), int(tries), _text(cid))


def failed(row: Mapping[bytes, bytes]) -> StoredFailedJob:
    """A failed job from its hash."""
    stored = job(
        [row[b"payload"], row[b"due"], row[b"priority"], row[b"tries"], row.get(b"cid")],
        row[b"id"].decode(),
        row[b"queue"].decode(),
    )
    return StoredFailedJob(
        stored,
        int(row[b"attempts"]),
        row[b"error"].decode(),
        row[b"traceback"].decode(),
        datetime.fromtimestamp(float(row[b"failed_at"]), UTC),
    )
