"""Opening the event bus named by ``--bus`` for one CLI command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from afterward._exceptions import AfterwardError
from afterward.cli._output import CliError, one_line
from afterward.events import EventBus

__all__ = ["load_bus", "make_bus", "open_bus"]


@asynccontextmanager
async def open_bus(url: str | None, app: str | None = None) -> AsyncIterator[EventBus]:
    """Connect to the bus at ``url`` (the default bus when ``None``) and close it after.

    With ``app`` (``MODULE:ATTRIBUTE``), use that bus object instead: your app's bus,
    with its subscribers, which dead-letter retries need.

    Raises:
        CliError: the URL is malformed or names an unknown scheme, or the backend's
            server cannot be reached; the message is one line.
    """
    bus = load_bus(app) if app is not None else make_bus(url)
    async with bus:
        yield bus


def make_bus(url: str | None) -> EventBus:
    """The (not yet opened) bus at ``url``, the default bus when ``None``.

    Raises:
        CliError: the URL is malformed, names an unknown scheme or a backend whose
            extra is not installed; the message is one line.
    """
    try:
        return EventBus(url) if url else EventBus()
    except (AfterwardError, ValueError, ImportError) as exc:  # ImportError: a missing extra
        raise CliError(f"cannot use bus URL {url!r}: {one_line(exc)}") from exc


def load_bus(spec: str) -> Any:
    """Import ``module:attribute`` (your app's bus, with its subscribers) and return it.

    Raises:
        CliError: the module cannot be imported or has no such attribute.
    """
    import importlib
    import sys

    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"{spec!r} is not MODULE:ATTRIBUTE (e.g. myapp.events:bus)")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {one_line(exc)}") from exc
    try:
        target = module
        for part in attribute.split("."):
            target = getattr(target, part)
    except AttributeError as exc:
        raise CliError(f"{module_name!r} has no attribute {attribute!r}") from exc
    return target
