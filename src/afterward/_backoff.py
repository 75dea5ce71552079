"""What ``backoff=`` means everywhere (jobs, HTTP retries): seconds, one number or a
sequence whose last value repeats. One parser, so the two cannot drift apart."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard

from afterward._exceptions import ConfigError

__all__ = ["backoff_step", "check_backoff", "is_seconds"]


def is_seconds(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite number of seconds >= 0 (``bool`` is not a number here)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def check_backoff(where: str, backoff: object) -> tuple[float, ...]:
    """Validate ``backoff`` (seconds, or a sequence of seconds) as the delays it gives.

    Raises:
        ConfigError: not a number or a sequence, or a value negative, infinite or NaN.
    """
    steps = (backoff,) if is_seconds(backoff) else backoff
    if not isinstance(steps, Sequence) or isinstance(steps, str | bytes):
        raise ConfigError(f"{where}: backoff must be seconds or a sequence, got {backoff!r}")
    delays = tuple(float(step) for step in steps if is_seconds(step))
    if len(delays) != len(steps):
        raise ConfigError(f"{where}: backoff values must be seconds >= 0, got {backoff!r}")
    return delays


def backoff_step(delays: Sequence[float], attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based); the last value repeats."""
    if not delays:
        return 0.0
    return float(delays[min(attempt, len(delays)) - 1])
