"""Running a group's handler: its defer scope, its inbox, its retries with backoff, and
what each run leaves in the flow history."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from afterward import _telemetry
from afterward._stats import incr, observe
from afterward.defer import DeferScope
from afterward.events._envelope import Event
from afterward.events._records import Attempt
from afterward.events._subscription import BatchHandler, Handler, Subscription

__all__ = ["attempt_of", "error_text", "run_batch_handler", "run_handler"]

logger = logging.getLogger("afterward.events")


async def _call(sub: Subscription, event: Event, system: str) -> None:
    tracing = _telemetry.tracing
    started = time.perf_counter()
    try:
        if tracing is None:
            await _handle(sub, event)
            return
        with tracing.consume(system, sub.group, event):
            await _handle(sub, event)
    finally:
        observe("events.handler_seconds", (sub.group, sub.topic), time.perf_counter() - started)


async def _handle(sub: Subscription, event: Event) -> None:
    async with DeferScope(event.correlation_id):
        if sub.inbox is not None:
            from afterward.events._inbox import run_in_inbox

            await run_in_inbox(sub, event)
        elif sub.is_async:
            await cast("Awaitable[None]", cast("Handler", sub.handler)(event))
        else:
            result = await asyncio.to_thread(cast("Handler", sub.handler), event)
            if inspect.isawaitable(result):
                await result


def error_text(error: BaseException) -> str:
    """``"ExceptionType: message"``, as dead letters and attempts store it."""
    return f"{type(error).__name__}: {error}"


def attempt_of(
    sub: Subscription, event: Event, attempt: int, outcome: str, error: str | None = None
) -> Attempt:
    """An :class:`Attempt` of ``sub``'s group with ``event``, happening now."""
    return Attempt(
        event.correlation_id or "",
        sub.group,
        sub.topic,
        event.id,
        attempt,
        outcome,
        datetime.now(UTC),
        error,
    )


async def run_handler(
    sub: Subscription,
    event: Event,
    first_attempt: int = 1,
    history: list[Attempt] | None = None,
    *,
    system: str = "afterward",
) -> tuple[int, BaseException | None, str]:
    """Run the handler with retries; return (attempts made, last error, its traceback).

    With ``history``, append a ``handled`` or ``failed`` :class:`Attempt` per run.
    ``system`` (the backend's URL scheme) names the messaging system in traces.
    """
    attempt = first_attempt
    last_attempt = first_attempt + sub.retries
    while True:
        try:
            await _call(
                sub, event if event.attempt == attempt else replace(event, attempt=attempt), system
            )
            if history is not None:
                history.append(attempt_of(sub, event, attempt, "handled"))
            return attempt, None, ""
        except Exception as exc:
            tb = traceback.format_exc()
            if history is not None:
                history.append(attempt_of(sub, event, attempt, "failed", error_text(exc)))
            logger.warning(
                "handler %s of group %r failed on event %s (attempt %d): %r",
                getattr(sub.handler, "__qualname__", sub.handler),
                sub.group,
                event.id,
                attempt,
                exc,
                extra={"correlation_id": event.correlation_id},
            )
            if attempt >= last_attempt:
                return attempt, exc, tb
            incr("events.retried", labels=(sub.group, sub.topic))
            await asyncio.sleep(sub.delay_before(attempt - first_attempt + 1))
            attempt += 1


async def _call_batch(sub: Subscription, events: list[Event], system: str) -> None:
    tracing = _telemetry.tracing
    started = time.perf_counter()
    try:
        if tracing is None:
            await _handle_batch(sub, events)
            return
        with tracing.consume_batch(system, sub.group, sub.topic, events):
            await _handle_batch(sub, events)
    finally:
        observe("events.handler_seconds", (sub.group, sub.topic), time.perf_counter() - started)


async def _handle_batch(sub: Subscription, events: list[Event]) -> None:
    # One scope for the run: what the handler defers runs once it returned.
    async with DeferScope(events[0].correlation_id if len(events) == 1 else None):
        handler = cast("BatchHandler", sub.handler)
        result: Any = handler(events) if sub.is_async else await asyncio.to_thread(handler, events)
        if inspect.isawaitable(result):
            await result


async def run_batch_handler(
    sub: Subscription, events: Sequence[Event], *, system: str = "afterward"
) -> tuple[int, BaseException | None, str]:
    """Run a batch subscription's handler on ``events`` with the group's retries and
    backoff; return (runs made, the last error, its traceback). ``system``: see
    :func:`run_handler`."""
    batch = list(events)
    attempt = 1
    while True:
        try:
            await _call_batch(sub, batch, system)
            return attempt, None, ""
        except Exception as exc:
            tb = traceback.format_exc()
            logger.warning(
                "batch handler %s of group %r failed on %d events (attempt %d): %r",
                getattr(sub.handler, "__qualname__", sub.handler),
                sub.group,
                len(batch),
                attempt,
                exc,
            )
            if attempt > sub.retries:
                return attempt, exc, tb
            incr("events.retried", len(batch), labels=(sub.group, sub.topic))
            await asyncio.sleep(sub.delay_before(attempt))
            attempt += 1
            batch = [replace(e, attempt=attempt) for e in batch]
