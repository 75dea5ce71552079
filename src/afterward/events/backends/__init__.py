"""Backends by URL scheme, imported on first use.

``memory://`` and ``sqlite:///path`` need nothing beyond the standard library; ``kafka://``
and ``redis://`` need their extras and say so when missing.
"""

from __future__ import annotations

import importlib

from afterward._exceptions import ConfigError
from afterward.events._backend import EventLog

__all__ = ["BACKENDS", "open_backend"]

#: scheme -> (module, class, extra needed)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("afterward.events.backends.memory", "MemoryLog", None),
    "sqlite": ("afterward.events.backends.sqlite", "SQLiteLog", None),
    "kafka": ("afterward.events.backends.kafka", "KafkaLog", "kafka"),
    "redis": ("afterward.events.backends.redis", "RedisLog", "redis"),
}


def open_backend(url: str) -> EventLog:
    """Return an (unconnected) event log for ``url``.

    Raises:
        ConfigError: the URL is not a string or names an unknown scheme.
        ImportError: the backend's optional dependencies are missing; the message says
            which extra to install.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"a bus URL looks like sqlite:///afterward.db or memory://, got {url!r}")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in BACKENDS:
        raise ConfigError(
            f"unknown bus URL scheme {scheme!r} in {url!r}; known: {', '.join(sorted(BACKENDS))}"
        )
    module_name, class_name, extra = BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None or exc.name == module_name:
            raise
        raise ImportError(
            f"the {scheme}:// bus needs extra packages: pip install 'afterward[{extra}]' ({exc})"
        ) from exc
    log: EventLog = getattr(module, class_name)(url)
    return log
