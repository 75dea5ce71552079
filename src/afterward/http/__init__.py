"""Concurrent HTTP with httpx's API and aiohttp underneath: ``pool``, ``batch``, fakes.

Needs the ``http`` extra (``pip install 'afterward[http]'``). Every request carries the
current ``X-Correlation-ID``; ``docs/http.md`` has the guide and the measurements
behind the aiohttp transport.

Example:
    >>> from afterward import http
    >>> resp = await http.get("https://api.example.com/users/1")
    >>> results = await http.pool({"user": http.get(u1), "orders": http.get(u2)})
    >>> http.batch([http.post(hook, json=event) for hook in hooks]).defer()
    >>> await http.get(url).retry(3)     # on transport errors, 429 and 5xx
"""

from __future__ import annotations

try:
    import httpx as _httpx  # noqa: F401
    import httpx_aiohttp as _httpx_aiohttp  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"afterward.http needs httpx, httpx-aiohttp and aiohttp ({exc.name} is missing): "
        "pip install 'afterward[http]'"
    ) from exc

from afterward.http._batch import Batch, batch
from afterward.http._client import aclose, configure
from afterward.http._fake import Fake, FakeValue, fake, prevent_stray_requests, response
from afterward.http._pool import DEFAULT_CONCURRENCY, Result, pool, pool_sync
from afterward.http._request import (
    CORRELATION_HEADER,
    PendingRequest,
    RequestOptions,
    delete,
    get,
    head,
    options,
    patch,
    post,
    put,
    request,
)
from afterward.http._retry import Retry

__all__ = [
    "CORRELATION_HEADER",
    "DEFAULT_CONCURRENCY",
    "Batch",
    "Fake",
    "FakeValue",
    "PendingRequest",
    "RequestOptions",
    "Result",
    "Retry",
    "aclose",
    "batch",
    "configure",
    "delete",
    "fake",
    "get",
    "head",
    "options",
    "patch",
    "pool",
    "pool_sync",
    "post",
    "prevent_stray_requests",
    "put",
    "request",
    "response",
]
