"""Context variables shared by every part of afterward: the defer scope and the
correlation ID. Kept tiny and import-free so the whole package can depend on it."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from afterward._exceptions import ConfigError

if TYPE_CHECKING:
    from afterward.defer import DeferScope

__all__ = ["correlate", "correlation_id", "new_correlation_id"]

_getrandbits = random.getrandbits
# Version 4 in bits 76-79, RFC 4122 variant (0b10) in bits 62-63.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID4_SET = (0x4 << 76) | (0x2 << 62)

_correlation_id: ContextVar[str | None] = ContextVar("afterward_correlation_id", default=None)
_current_scope: ContextVar[DeferScope | None] = ContextVar("afterward_scope", default=None)

# IDs arrive in request headers: accept printable ASCII only, and keep them short,
# so a client cannot inject log lines or response headers through them.
_VALID_ID = re.compile(r"[\x21-\x7e]{1,200}")


def new_correlation_id() -> str:
    """Return a fresh correlation ID: a random UUID (version 4) in canonical form.

    Made from ``random.getrandbits`` rather than ``uuid.uuid4()`` (which reads
    ``os.urandom`` and builds a UUID object): every request without an incoming ID needs
    one, and this is about 6x cheaper. Correlation IDs must be unique, not secret; the
    generator is reseeded in forked children.
    """
    bits = _getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
