"""What a metrics scrape reads from the backend: lag, dead letters, queue depth.

Counters (published, handled, jobs...) live in this process (:mod:`afterward._stats`);
these three are the backend's state, the same whichever process asks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from afterward.events._bus import EventBus
from afterward.events._job_wire import is_worker_group
from afterward.events._records import QueueDepth

__all__ = ["Gauges", "read_gauges"]


@dataclass(frozen=True, slots=True)
class Gauges:
    """One reading of the backend.

    Attributes:
        lag: events not yet processed, per group and topic (:meth:`EventBus.lag`).
        dead_letters: dead letters held per group (failed jobs are in ``queues``).
        queues: jobs per state, per queue; empty on a backend without a work queue.
    """

    lag: dict[str, dict[str, int]] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    queues: dict[str, QueueDepth] = field(default_factory=dict)


async def read_gauges(bus: EventBus) -> Gauges:
    """Read ``bus``'s lag, dead-letter counts and queue depths from its backend.

    Raises:
        BackendError: the backend failed.
    """
    backend = bus._core.backend
    lag = await bus.lag()
    letters = Counter(
        d.group for d in await backend.state.dead_letters(None) if not is_worker_group(d.group)
    )
    queues = await backend.queue.depth(None) if backend.queue is not None else {}
    return Gauges(lag, dict(letters), queues)
