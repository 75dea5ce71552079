"""One lazy request: :class:`PendingRequest` and the functions that make them."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypedDict, Unpack

import httpx

from afterward._context import correlation_id
from afterward._exceptions import ConfigError, InvalidRequestError
from afterward._loop import run_sync
from afterward.http import _client
from afterward.http._fake import active_fakes

__all__ = [
    "CORRELATION_HEADER",
    "METHODS",
    "PendingRequest",
    "RequestOptions",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
]

#: The header every request carries when a correlation ID is bound.
CORRELATION_HEADER = "X-Correlation-ID"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
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


_OPTIONS = RequestOptions.__optional_keys__


class PendingRequest:
    """A request described but not sent yet: await it, or give it to ``pool``/``batch``.

    Nothing touches the network until it is awaited (or sent by a pool or batch); it
    can be sent more than once. Made by :func:`get`, :func:`post`... and :func:`request`.

    Example:
        >>> req = http.post("https://pay.test/charge", json={"amount": 5})
        >>> resp = await req                 # an httpx.Response
        >>> resp = req.send_sync()           # the same, from sync code

    Attributes:
        method: the HTTP method, upper case.
        url: the URL as given (joined with ``configure(base_url=...)`` when sent).
        options: the httpx keyword arguments (``params``, ``headers``, ``json``...).
    """

    __slots__ = ("method", "options", "url")

    def __init__(
        self, method: str, url: str | httpx.URL, **options: Unpack[RequestOptions]
    ) -> None:
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise ConfigError(
                f"unknown HTTP method {method!r}; use one of {', '.join(sorted(METHODS))}"
            )
        if not isinstance(url, str | httpx.URL):
            raise InvalidRequestError(f"a request URL must be a str or httpx.URL, got {url!r}")
        unknown = set(options) - _OPTIONS
        if unknown:
            raise InvalidRequestError(
                f"unknown request argument(s) {', '.join(sorted(unknown))}; httpx takes "
                f"{', '.join(sorted(_OPTIONS))}"
            )
        self.method = method.upper()
        self.url = url
        self.options = options

    async def send(self) -> httpx.Response:
        """Send the request and return the response, body read.

        A status >= 400 is returned, not raised (httpx's behaviour).

        Raises:
            httpx.TransportError: connection refused or dropped, timeouts...
            StrayRequestError: under a fake preventing stray requests, nothing matched.
        """
        options = self.options
        client = await _client.current_client(faking=bool(active_fakes()))
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
        request = client.build_request(self.method, _client.merge_url(self.url), **build)
        cid = correlation_id()
        if cid is not None and CORRELATION_HEADER not in caller_headers:
            request.headers[CORRELATION_HEADER] = cid
        return await client.send(request, **send_options)

    def send_sync(self) -> httpx.Response:
        """Blocking twin of :meth:`send`, for Flask, Django and scripts.

        Runs on afterward's one background event loop (shared connection pool);
        works from any thread, including one running its own event loop.
        """
        return run_sync(self.send())

    def __await__(self) -> Generator[Any, None, httpx.Response]:
        return self.send().__await__()

    def __repr__(self) -> str:
        return f"<PendingRequest {self.method} {self.url}>"


def request(method: str, url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a request with any method; ``options`` are httpx's per-request arguments.

    Raises:
        ConfigError: the method is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.
        InvalidRequestError: an argument httpx does not take.
    """
    return PendingRequest(method, url, **options)


def get(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a GET request (``await`` it to send it). See :func:`request`."""
    return PendingRequest("GET", url, **options)


def post(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a POST request (``json=``, ``data=``, ``content=``, ``files=``...)."""
    return PendingRequest("POST", url, **options)


def put(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a PUT request. See :func:`request`."""
    return PendingRequest("PUT", url, **options)


def patch(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a PATCH request. See :func:`request`."""
    return PendingRequest("PATCH", url, **options)


def delete(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a DELETE request. See :func:`request`."""
    return PendingRequest("DELETE", url, **options)


def head(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a HEAD request. See :func:`request`."""
    return PendingRequest("HEAD", url, **options)


def options(url: str | httpx.URL, **kwargs: Unpack[RequestOptions]) -> PendingRequest:
    """Describe an OPTIONS request. See :func:`request`."""
    return PendingRequest("OPTIONS", url, **kwargs)
