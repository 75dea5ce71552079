"""One correlation ID's flow: every step we know of, from every source, in time order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from afterward.dashboard._data import maybe_await, read_dead_letters, read_failed_jobs
from afterward.dashboard._recorder import Recorder

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


async def _bus_events(bus: Any, cid: str) -> list[FlowStep]:
    finder = getattr(bus, "events_for", None)
    if not callable(finder):
        return []
    steps = []
    for event in await maybe_await(finder(cid)):
        steps.append(
            FlowStep(
                _timestamp(event.occurred_at),
                "publish",
                f"published {event.topic}",
                None,
                {"event": event.id, "key": event.key, "version": event.version},
            )
        )
    return steps


async def build_flow(bus: Any, recorder: Recorder, cid: str) -> list[FlowStep]:
    """Merge the recorder's steps, the bus's events, dead letters and failed jobs."""
    steps = [FlowStep(s.at, s.kind, s.title, s.ok, dict(s.detail)) for s in recorder.flow(cid)]
    recorded_publishes = {s.detail.get("event") for s in steps if s.kind == "publish"}
    steps += [s for s in await _bus_events(bus, cid) if s.detail["event"] not in recorded_publishes]
    for letter in await read_dead_letters(bus):
        if letter.event.correlation_id == cid:
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
    for job in await read_failed_jobs(bus):
        if job.correlation_id == cid:
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
