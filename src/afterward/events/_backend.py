"""What a bus URL opens: :class:`Backend`, a log and the state store beside it, with
their optional capabilities looked up once (see :mod:`._protocols`)."""

from __future__ import annotations

from afterward._exceptions import BackendError
from afterward.events._protocols import (
    ClusterLog,
    ConnectContext,
    DeadLetterMirror,
    EventLog,
    FlowLog,
    GroupLog,
    Log,
    PrunableLog,
    PrunableState,
    RetainedLog,
    SchemaStore,
    StateStore,
)
from afterward.events._work_queue import FailedJobStore, WorkQueue

__all__ = ["Backend"]


class Backend(ConnectContext):
    """What a bus URL opens: a log, the state store beside it, and their capabilities.

    Args:
        log: the events.
        state: positions, processed IDs, versions, claims and dead letters, kept apart
            from the log (use :meth:`of` for a backend that holds everything).

    Attributes:
        log: the log.
        state: the state store.
        separate: whether the state store is another backend than the log.
        scheme: the log's URL scheme.
        flow: the log when it is a :class:`FlowLog`, else ``None``.
        groups: the log when it is a :class:`GroupLog`, else ``None``.
        mirror: the log when it is a :class:`DeadLetterMirror`, else ``None``.
        queue: the work queue (``jobs``, else the log or the state store when it is
            one), or ``None``.
        failed: the failed-jobs store beside it, or ``None``.
        schemas: the state store when it keeps the schema registry, else ``None``.
        prunable: the log when it prunes its events itself (:class:`PrunableLog`).
        retained: the log when its server keeps a per-topic retention (Kafka).
        state_pruning: the state store when it prunes its records (:class:`PrunableState`).
    """

    def __init__(
        self,
        log: Log,
        state: StateStore,
        *,
        separate: bool = True,
        jobs: WorkQueue | None = None,
    ) -> None:
        # ``jobs``: a work queue that is neither the log nor the state store.
        self.log = log
        self.state = state
        self.separate = separate
        self.scheme = log.scheme
        # Looked up once: isinstance on a runtime-checkable protocol is not free.
        self.flow: FlowLog | None = log if isinstance(log, FlowLog) else None
        self.groups: GroupLog | None = log if isinstance(log, GroupLog) else None
        self.mirror: DeadLetterMirror | None = log if isinstance(log, DeadLetterMirror) else None
        self._bound = False
        # A queue given apart from the log and the state store is connected with them.
        self._own_queue = jobs
        if jobs is None and isinstance(log, WorkQueue):
            jobs = log
        elif jobs is None and isinstance(state, WorkQueue):
            jobs = state
        self.queue: WorkQueue | None = jobs
        self.schemas: SchemaStore | None = state if isinstance(state, SchemaStore) else None
        self.prunable: PrunableLog | None = log if isinstance(log, PrunableLog) else None
        self.retained: RetainedLog | None = log if isinstance(log, RetainedLog) else None
        self.state_pruning: PrunableState | None = (
            state if isinstance(state, PrunableState) else None
        )
        self.failed: FailedJobStore | None = None
        for candidate in (jobs, state):
            holder: object = candidate
            if isinstance(holder, FailedJobStore):
                self.failed = holder
                break

    @classmethod
    def of(cls, log: EventLog, *, jobs: WorkQueue | None = None) -> Backend:
        """A backend whose log is its own state store (and ``jobs`` its work queue)."""
        return cls(log, log, separate=False, jobs=jobs)

    def __repr__(self) -> str:
        return f"<Backend {self.scheme} log={self.log!r} state={self.state!r}>"

    async def connect(self) -> None:
        """Connect the state store, then the log; a separate store must belong to the
        log's cluster.

        Raises:
            BackendError: the state store belongs to another cluster (or one that lost
                its data and came back empty under a new ID).
        """
        if self.separate:
            await self.state.connect()
        await self.log.connect()
        if self.separate and not self._bound and isinstance(self.log, ClusterLog):
            cluster = await self.log.cluster_id()
            stored = await self.state.bind_cluster(cluster)
            if stored != cluster:
                raise BackendError(
                    f"the state store {self.state!r} belongs to cluster {stored!r}, not to "
                    f"{cluster!r} behind {self.log!r}: using it would skip or repeat that "
                    "cluster's events. Give this cluster a state store of its own (store=)",
                    backend=self.scheme,
                )
            self._bound = True
        if self._own_queue is not None:
            await self._own_queue.connect()

    async def aclose(self) -> None:
        """Close the work queue, the log, then the state store."""
        if self._own_queue is not None:
            await self._own_queue.aclose()
        await self.log.aclose()
        if self.separate:
            await self.state.aclose()
