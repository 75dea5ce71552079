"""Process-wide settings, changed with :func:`afterward.configure`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from afterward._exceptions import ConfigError

__all__ = ["Settings", "check_grace", "configure", "settings"]


@dataclass
class Settings:
    """afterward's process-wide settings.

    Attributes:
        max_concurrency: deferred callbacks running at once in this process; the excess
            waits its turn (never delays a response).
        grace_period: seconds to let deferred work finish at shutdown before it is
            logged as lost.
        default_connection: where ``Job.dispatch()`` sends a job when no
            ``connection=`` is given: ``"deferred"``, ``"sync"``, ``"background"``,
            ``"queue"`` or any registered name (checked at dispatch).
    """

    max_concurrency: int = 64
    grace_period: float = 10.0
    default_connection: str = "deferred"


settings = Settings()


def _is_int_at_least_one(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def check_grace(what: str, value: object) -> float | None:
    """Return ``value`` if it is ``None`` or seconds >= 0, else raise :class:`ConfigError`."""
    if value is not None and not _is_seconds(value):
        raise ConfigError(f"{what} must be None or a number of seconds >= 0, got {value!r}")
    return value  # type: ignore[return-value]


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value != ""


_VALIDATORS: dict[str, tuple[Callable[[object], bool], str]] = {
    "max_concurrency": (_is_int_at_least_one, "an int >= 1"),
    "grace_period": (_is_seconds, "a number of seconds >= 0"),
    "default_connection": (_is_name, "a non-empty string naming a job connection"),
}


def configure(**options: Any) -> Settings:
    """Change afterward's process-wide settings and return them.

    Example:
        >>> afterward.configure(max_concurrency=16, grace_period=30)

    Raises:
        ConfigError: an unknown option, or a value of the wrong type or range; no
            setting is changed then.
    """
    for name, value in options.items():
        if name not in _VALIDATORS:
            raise ConfigError(
                f"unknown option {name!r}; known options: {', '.join(sorted(_VALIDATORS))}"
            )
        is_valid, meaning = _VALIDATORS[name]
        if not is_valid(value):
            raise ConfigError(f"{name} must be {meaning}, got {value!r}")
    for name, value in options.items():
        setattr(settings, name, value)
    return settings
