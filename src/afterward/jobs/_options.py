"""A job's retry policy, validated once per job class or function."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from afterward._exceptions import ConfigError

__all__ = ["JobOptions"]


@dataclass(frozen=True, slots=True)
class JobOptions:
    """A job's retry policy: ``tries`` in total, ``backoff`` seconds, ``timeout`` seconds."""

    tries: int = 1
    backoff: tuple[float, ...] = ()
    timeout: float | None = None

    @classmethod
    def checked(cls, where: str, tries: object, backoff: object, timeout: object) -> JobOptions:
        """Validate the options of job ``where``.

        Raises:
            ConfigError: ``tries`` is not an int >= 1, ``backoff`` not seconds >= 0
                (one number or a sequence), ``timeout`` not ``None`` or seconds > 0.
        """
        if not isinstance(tries, int) or isinstance(tries, bool) or tries < 1:
            raise ConfigError(f"{where}: tries must be an int >= 1, got {tries!r}")
        steps = (backoff,) if _is_seconds(backoff) else backoff
        if not isinstance(steps, Sequence) or isinstance(steps, str):
            raise ConfigError(f"{where}: backoff must be seconds or a sequence, got {backoff!r}")
        delays = tuple(float(step) for step in steps if _is_seconds(step))
        if len(delays) != len(steps):
            raise ConfigError(f"{where}: backoff values must be seconds >= 0, got {backoff!r}")
        if timeout is not None and not (_is_seconds(timeout) and timeout > 0):
            raise ConfigError(f"{where}: timeout must be None or seconds > 0, got {timeout!r}")
        return cls(tries, delays, None if timeout is None else float(timeout))


def _is_seconds(value: object) -> TypeGuard[float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
