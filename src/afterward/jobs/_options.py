"""A job's retry policy, validated once per job class or function."""

from __future__ import annotations

from dataclasses import dataclass

from afterward._backoff import check_backoff, is_seconds
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
        delays = check_backoff(where, backoff)
        if timeout is not None and not (is_seconds(timeout) and timeout > 0):
            raise ConfigError(f"{where}: timeout must be None or seconds > 0, got {timeout!r}")
        return cls(tries, delays, None if timeout is None else float(timeout))
