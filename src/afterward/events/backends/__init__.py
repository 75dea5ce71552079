"""Backends by URL scheme, imported on first use.

``memory://`` and ``sqlite:///path`` need nothing beyond the standard library; ``kafka://``
and ``redis://`` need their extras and say so when missing.

A backend module has one entry point, ``open_backend(url, open_store)``, returning the
:class:`~afterward.events._protocols.Backend` for ``url``; ``open_store`` opens another
URL as a state store, a :class:`Backend` (Kafka keeps its state in one). Adding a backend: see
``docs/architecture.md``.
"""

from __future__ import annotations

import importlib

from afterward._exceptions import ConfigError
from afterward.events._backend import Backend

__all__ = ["BACKENDS", "open_backend", "open_store"]

#: scheme -> (module, extra needed)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "memory": ("afterward.events.backends.memory", None),
    "sqlite": ("afterward.events.backends.sqlite", None),
    "kafka": ("afterward.events.backends.kafka", "kafka"),
    "redis": ("afterward.events.backends.redis", "redis"),
}


def _scheme(url: object) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"a bus URL looks like sqlite:///afterward.db or memory://, got {url!r}")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in BACKENDS:
        raise ConfigError(
            f"unknown bus URL scheme {scheme!r} in {url!r}; known: {', '.join(sorted(BACKENDS))}"
        )
    return scheme


def open_backend(url: str) -> Backend:
    """Return the (unconnected) backend for ``url``.

    Raises:
        ConfigError: the URL is not a string, names an unknown scheme or is malformed.
        ImportError: the backend's optional dependencies are missing; the message says
            which extra to install.
    """
    scheme = _scheme(url)
    module_name, extra = BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None or exc.name == module_name:
            raise
        raise ImportError(
            f"the {scheme}:// bus needs extra packages: pip install 'afterward[{extra}]' ({exc})"
        ) from exc
    backend: Backend = module.open_backend(url, open_store)
    return backend


def open_store(url: str) -> Backend:
    """Open ``url`` as a state store: a backend that holds its own state (its ``state``;
    its ``queue``, when that is a :class:`~afterward.events._work_queue.JobLedger`, can
    keep another log's job marks).

    Raises:
        ConfigError: the URL names a backend that keeps its state elsewhere (Kafka).
    """
    backend = open_backend(url)
    if backend.separate:
        raise ConfigError(f"{url!r} cannot be a state store: it keeps its own state elsewhere")
    return backend
