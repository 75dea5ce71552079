"""Building one attempt's ``httpx.Request``: the defaults of ``http.configure()`` and
the correlation ID applied, shared by lazy requests and durable requests' jobs."""

from __future__ import annotations

from typing import Any, TypedDict

import httpx

from afterward._context import correlation_id
from afterward.http import _client

__all__ = ["CORRELATION_HEADER", "OPTIONS", "RequestOptions", "build_request"]

#: The header every request carries when a correlation ID is bound.
CORRELATION_HEADER = "X-Correlation-ID"
_SEND_OPTIONS = frozenset({"auth", "follow_redirects"})


class RequestOptions(TypedDict, total=False):
    """The per-request keyword arguments of ``httpx.AsyncClient.request``."""

    params: Any
    headers: Any
    cookies: Any
    content: Any
    data: Any
    files: Any
    json: Any
    timeout: Any
    auth: Any
    follow_redirects: bool
    extensions: dict[str, Any]


#: The names :class:`RequestOptions` takes.
OPTIONS = RequestOptions.__optional_keys__


def build_request(
    client: httpx.AsyncClient, method: str, url: str | httpx.URL, options: RequestOptions
) -> tuple[httpx.Request, dict[str, Any]]:
    """The ``httpx.Request`` to send with ``client`` now, and ``client.send``'s options.

    Built afresh for every attempt: a request body is read once by the transport.
    """
    send_options: dict[str, Any] = {k: v for k, v in options.items() if k in _SEND_OPTIONS}
    build: dict[str, Any] = {k: v for k, v in options.items() if k not in _SEND_OPTIONS}
    caller_headers = httpx.Headers(options.get("headers"))
    defaults = _client.settings
    if defaults.headers:
        headers = httpx.Headers(defaults.headers)
        headers.update(caller_headers)
        build["headers"] = headers
    if defaults.timeout is not None and "timeout" not in options:
        build["timeout"] = defaults.timeout
    request = client.build_request(method, _client.merge_url(url), **build)
    cid = correlation_id()
    if cid is not None and CORRELATION_HEADER not in caller_headers:
        request.headers[CORRELATION_HEADER] = cid
    return request, send_options
