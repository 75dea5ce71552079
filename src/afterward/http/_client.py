"""The client requests go through: settings from :func:`configure`, one pooled client
per event loop, and the fake client while a fake is active.

An ``httpx.AsyncClient`` (and the aiohttp session under it) belongs to the event loop
that first used it, so the default client is kept per loop: the ASGI server's loop has
one, afterward's background loop (used by every sync twin) has another. Each is closed
when its loop shuts down (``asyncio.run`` and ``asyncio.Runner`` finalise async
generators, which is where the close is hooked).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from afterward._exceptions import ConfigError
from afterward.http._fake import FakeTransport
from afterward.http._retry import NO_RETRY, Retry, RetryValue, as_retry

__all__ = ["aclose", "configure", "current_client", "merge_url", "settings"]

#: Enough connections for 50+ requests in flight with room to spare; idle ones are
#: kept so a burst of requests reuses them.
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30)


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport with precise errors.

    It reports every aiohttp connection error as ``httpx.ConnectTimeout`` (a refused
    connection, a server hanging up...); users retrying on timeouts deserve better.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            precise = _precise_error(exc.__cause__)
            if precise is None or isinstance(exc, precise):
                raise
            raise precise(str(exc), request=request) from exc.__cause__


def _precise_error(cause: BaseException | None) -> type[httpx.TransportError] | None:
    if cause is None or isinstance(cause, TimeoutError):  # aiohttp's timeouts are right
        return None
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx.ReadError
    return None


@dataclass
class _Settings:
    base_url: httpx.URL | None = None
    timeout: httpx.Timeout | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    client: httpx.AsyncClient | None = None
    retry: Retry = NO_RETRY
    max_per_host: int | None = None


settings = _Settings()
_UNSET: Any = object()
_lock = threading.Lock()
#: loop -> (its default client, the async generator that closes it at loop shutdown)
_clients: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]] = {}
_fake_clients: weakref.WeakKeyDictionary[httpx.AsyncClient, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_plain_fake_client: httpx.AsyncClient | None = None


def configure(
    *,
    base_url: str | httpx.URL | None = _UNSET,
    timeout: float | httpx.Timeout | None = _UNSET,
    headers: Mapping[str, str] | None = _UNSET,
    client: httpx.AsyncClient | None = _UNSET,
    retry: RetryValue = _UNSET,
    max_per_host: int | None = _UNSET,
) -> None:
    """Set the defaults of every request made through ``afterward.http``.

    Only the arguments given change; ``None`` puts one back to its default.
    Per-request arguments override these (request headers are merged over them).

    Example:
        >>> http.configure(base_url="https://api.example.com/v2/", timeout=3.0,
        ...                headers={"Authorization": f"Bearer {token}"})
        >>> await http.get("orders")            # https://api.example.com/v2/orders

    Args:
        base_url: joined with relative request URLs (httpx's rules).
        timeout: seconds (> 0), or an ``httpx.Timeout``; default httpx's 5 s.
        headers: sent with every request.
        client: your own ``httpx.AsyncClient`` instead of afterward's aiohttp-backed
            one. You own it (afterward never closes it); note that an httpx client
            belongs to the event loop that first used it, and sync twins run on
            afterward's background loop.

    Raises:
        ConfigError: a value of the wrong type.
    """
    if base_url is not _UNSET:
        if base_url is not None and not isinstance(base_url, str | httpx.URL):
            raise ConfigError(f"base_url must be a str or httpx.URL, got {base_url!r}")
        settings.base_url = None if base_url is None else _with_trailing_slash(httpx.URL(base_url))
    if timeout is not _UNSET:
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float | httpx.Timeout)
            or (not isinstance(timeout, httpx.Timeout) and not timeout > 0)
        ):
            raise ConfigError(f"timeout must be seconds > 0 or an httpx.Timeout, got {timeout!r}")
        settings.timeout = None if timeout is None else httpx.Timeout(timeout)
    if headers is not _UNSET:
        if headers is not None and not isinstance(headers, Mapping):
            raise ConfigError(f"headers must be a mapping, got {headers!r}")
        settings.headers = httpx.Headers(headers)
    if client is not _UNSET:
        if client is not None and not isinstance(client, httpx.AsyncClient):
            raise ConfigError(
                f"client must be an httpx.AsyncClient (afterward is async inside), got {client!r}"
            )
        settings.client = client
    if retry is not _UNSET:
        settings.retry = as_retry(retry, "http.configure")
    if max_per_host is not _UNSET:
        if max_per_host is not None and (
            isinstance(max_per_host, bool) or not isinstance(max_per_host, int) or max_per_host < 1
        ):
            raise ConfigError(f"max_per_host must be None or an int >= 1, got {max_per_host!r}")
        settings.max_per_host = max_per_host


def _with_trailing_slash(url: httpx.URL) -> httpx.URL:
    if url.raw_path.endswith(b"/"):
        return url
    return url.copy_with(raw_path=url.raw_path + b"/")


def merge_url(url: str | httpx.URL) -> httpx.URL | str:
    """Join a relative ``url`` with the configured base URL, as httpx's clients do."""
    base = settings.base_url
    if base is None:
        return url
    merged = httpx.URL(url)
    if not merged.is_relative_url:
        return merged
    return base.copy_with(raw_path=base.raw_path + merged.raw_path.lstrip(b"/"))


async def current_client(faking: bool) -> httpx.AsyncClient:
    """The client for a request sent now, on the running loop."""
    if faking:
        return _fake_client()
    if settings.client is not None:
        return settings.client
    loop = asyncio.get_running_loop()
    with _lock:
        entry = _clients.get(loop)
    if entry is not None and not entry[0].is_closed:
        return entry[0]
    return await _new_default_client(loop)


async def _new_default_client(loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
    client = HttpxAiohttpClient(transport=_Transport(limits=LIMITS), limits=LIMITS)
    closer = _close_at_loop_shutdown(client)
    await closer.__anext__()  # registers it with the loop's async-generator finaliser
    with _lock:
        for old in [old for old in _clients if old.is_closed()]:
            del _clients[old]  # a loop that ended without finalising (rare): forget it
        entry = _clients.get(loop)
        if entry is None or entry[0].is_closed:
            _clients[loop] = (client, closer)
            return client
    await closer.aclose()  # another task of this loop made one meanwhile
    return entry[0]


async def _close_at_loop_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


async def aclose() -> None:
    """Close the running loop's default client now (it is reopened on next use).

    Not needed with ``asyncio.run`` or servers built on it: the client is closed when
    its loop shuts down. Useful for loops closed by hand.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        entry = _clients.pop(loop, None)
    if entry is not None:
        await entry[1].aclose()


def _fake_client() -> httpx.AsyncClient:
    """A client over :class:`FakeTransport`, configured like the one it stands in for."""
    global _plain_fake_client
    user = settings.client
    with _lock:
        if user is None:
            if _plain_fake_client is None:
                _plain_fake_client = httpx.AsyncClient(transport=FakeTransport())
            return _plain_fake_client
        stand_in = _fake_clients.get(user)
        if stand_in is None:
            stand_in = httpx.AsyncClient(
                transport=FakeTransport(),
                base_url=user.base_url,
                headers=user.headers,
                timeout=user.timeout,
                follow_redirects=user.follow_redirects,
            )
            _fake_clients[user] = stand_in
        return stand_in
