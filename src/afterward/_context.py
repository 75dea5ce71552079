"""The correlation ID shared by every part of afterward (a context variable) and how
IDs are made and checked. Kept tiny and import-free so the whole package can depend on
it; the defer scope's own variable lives in :mod:`afterward.defer`."""

from __future__ import annotations

import itertools
import os
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from afterward._exceptions import ConfigError

__all__ = ["correlate", "correlation_id", "new_correlation_id"]


def _new_prefix() -> str:
    # 80 random bits laid out as the first four groups of a UUID4 (version nibble 4,
    # RFC 4122 variant), leaving the last group for a counter.
    bits = random.getrandbits(80)
    h = f"{bits:020x}"
    variant = "89ab"[int(h[15], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{variant}{h[16:19]}-"


_prefix = _new_prefix()
_counter = itertools.count(random.getrandbits(47))


def _reset_after_fork() -> None:
    global _prefix
    _prefix = _new_prefix()


os.register_at_fork(after_in_child=_reset_after_fork)

_correlation_id: ContextVar[str | None] = ContextVar("afterward_correlation_id", default=None)

# IDs arrive in request headers: accept printable ASCII only, and keep them short,
# so a client cannot inject log lines or response headers through them.
_VALID_ID = re.compile(r"[\x21-\x7e]{1,200}")


def new_correlation_id() -> str:
    """Return a fresh correlation ID in UUID (version 4) form.

    Every request without an incoming ID needs one, so this is cheap: a random 80-bit
    prefix per process (new in every forked child) and a 48-bit counter, about 5x
    cheaper than ``str(uuid.uuid4())``. Correlation IDs must be unique, not secret.
    """
    return _prefix + "%012x" % (next(_counter) & 0xFFFFFFFFFFFF)  # faster than an f-string


def is_valid_correlation_id(value: str) -> bool:
    """Whether ``value`` is acceptable as a correlation ID from outside."""
    return _VALID_ID.fullmatch(value) is not None


def correlation_id() -> str | None:
    """Return the correlation ID bound to the current context, or ``None``.

    Inside a request served through an afterward middleware, a deferred callback, a job
    or an event handler, this is the ID of the request (or event) that started it.
    """
    return _correlation_id.get()


@contextmanager
def correlate(value: str | None = None) -> Iterator[str]:
    """Bind a correlation ID for the duration of a ``with`` block.

    Example:
        >>> with correlate("import-2024-07") as cid:
        ...     defer(log_import)          # the callback runs with the same ID

    Args:
        value: the ID to bind; a new UUID when omitted.
    """
    if value is None:
        value = new_correlation_id()
    elif not isinstance(value, str) or not is_valid_correlation_id(value):
        raise ConfigError(f"correlation ID must be 1-200 printable ASCII characters, got {value!r}")
    token = _correlation_id.set(value)
    try:
        yield value
    finally:
        _correlation_id.reset(token)
