"""One correlation ID's flow: every step we know of, from every source, in time order.

Sources: this process's :class:`~afterward.dashboard.Recorder`; the bus's stored events
(``events_for``) and group attempts (``history``), which hold across processes on
backends that keep them (memory, SQLite); dead letters and failed jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from afterward.dashboard._recorder import Recorder
from afterward.events import (
    JOB_TOPIC_PREFIX,
    is_worker_group,
    maybe_await,
    read_dead_letters,
    read_failed_jobs,
)

__all__ = ["FlowStep", "build_flow"]


@dataclass
class FlowStep:
    """A row of the timeline; ``offset_ms`` is counted from the flow's first step."""

    at: float
    kind: str
    title: str
    ok: bool | None
    detail: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    offset_ms: float = 0.0


def _timestamp(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0)


async def _read(bus: Any, name: str, cid: str) -> list[Any]:
    # The async twin when there is one: the sync one blocks on afterward's own loop.
    reader = getattr(bus, f"{name}_async", None) or getattr(bus, name, None)
    return list(await maybe_await(reader(cid))) if callable(reader) else []


async def _bus_events(bus: Any, cid: str) -> list[FlowStep]:
    return [
        FlowStep(
            _timestamp(event.occurred_at),
            "publish",
            f"published {event.topic}",
            None,
            {"event": event.id, "key": event.key, "version": event.version},
        )
        for event in await _read(bus, "events_for", cid)
    ]


def _attempt_step(attempt: Any) -> FlowStep:
    group, n, outcome = attempt.group, attempt.attempt, attempt.outcome
    if is_worker_group(group):
        queue = attempt.topic.removeprefix(JOB_TOPIC_PREFIX)
        title, ok = {
            "queued": (f"job attempt {n} queued on {queue}", None),
            "handled": (f"{group} ran job attempt {n}", True),
            "failed": (f"{group}: job attempt {n} failed", False),
            "dead_lettered": (f"{group} gave up on the job", False),
        }.get(outcome, (f"{group} job attempt {n}: {outcome}", None))
    else:
        title, ok = {
            "handled": (f"{group} handled attempt {n}", True),
            "failed": (f"{group} attempt {n} failed", False),
            "dead_lettered": (f"{group} dead-lettered after {n} attempt(s)", False),
            "duplicate": (f"{group} skipped a duplicate", None),
            "stale": (f"{group} skipped a stale version", None),
        }.get(outcome, (f"{group} {outcome}", None))
    kind = "dead_letter" if outcome == "dead_lettered" else "handler"
    if outcome == "queued":
        kind = "job"
    return FlowStep(
        _timestamp(attempt.at),
        kind,
        title,
        ok,
        {"event": attempt.event_id, "topic": attempt.topic, "error": attempt.error},
    )


async def _bus_history(
    bus: Any, cid: str, known: set[tuple[str, Any]], failed_jobs: bool
) -> list[FlowStep]:
    steps = []
    for attempt in await _read(bus, "history", cid):
        step = _attempt_step(attempt)
        # Not repeated: the same run recorded in this process (the demo's handlers), a
        # dead letter or failed job still in the store (shown with its link).
        if (step.title, attempt.event_id) in known:
            continue
        if attempt.outcome == "dead_lettered" and (
            ("dead_letter", attempt.event_id) in known
            or (failed_jobs and is_worker_group(attempt.group))
        ):
            continue
        steps.append(step)
    return steps


async def build_flow(bus: Any, recorder: Recorder, cid: str) -> list[FlowStep]:
    """Merge the recorder's steps, the bus's events and attempts, dead letters and
    failed jobs."""
    steps = [FlowStep(s.at, s.kind, s.title, s.ok, dict(s.detail)) for s in recorder.flow(cid)]
    recorded_publishes = {s.detail.get("event") for s in steps if s.kind == "publish"}
    steps += [s for s in await _bus_events(bus, cid) if s.detail["event"] not in recorded_publishes]
    letters = [d for d in await read_dead_letters(bus) if d.event.correlation_id == cid]
    jobs = [j for j in await read_failed_jobs(bus) if j.correlation_id == cid]
    known = {(s.title, s.detail.get("event")) for s in steps}
    known |= {("dead_letter", d.event.id) for d in letters}
    steps += await _bus_history(bus, cid, known, failed_jobs=bool(jobs))
    for letter in letters:
        steps.append(
            FlowStep(
                _timestamp(letter.failed_at),
                "dead_letter",
                f"dead letter in {letter.group} after {letter.attempts} attempt(s)",
                False,
                {"event": letter.event.id, "error": letter.error},
                link=f"/dead-letters/{letter.id}",
            )
        )
    for job in jobs:
        steps.append(
            FlowStep(
                _timestamp(job.failed_at),
                "job",
                f"job {job.path} failed after {job.attempts} attempt(s)",
                False,
                {"queue": job.queue, "error": job.error},
                link=f"/failed-jobs/{job.id}",
            )
        )
    steps.sort(key=lambda s: s.at)
    if steps:
        start = steps[0].at
        for step in steps:
            step.offset_ms = (step.at - start) * 1000
    return steps
