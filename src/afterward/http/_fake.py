"""Fakes for tests: canned responses at the transport level, recorded requests.

A fake replaces the *transport*, never the client: URLs are still merged with
``configure(base_url=...)``, default headers and the correlation ID are still added,
so what a test sees in :attr:`Fake.requests` is what would have gone on the wire.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TypeAlias

import httpx

from afterward._exceptions import ConfigError, InvalidCallbackError, StrayRequestError

__all__ = ["Fake", "FakeTransport", "FakeValue", "fake", "prevent_stray_requests", "response"]

Responder: TypeAlias = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response]"]
#: What a pattern may map to: a response, an exception to raise, a callable
#: ``(request) -> response`` (sync or async), or a sequence of those used in turn.
FakeValue: TypeAlias = "httpx.Response | BaseException | Responder | Sequence[FakeValue]"

_lock = threading.Lock()
_active: list[Fake] = []
#: The fakes a deferred batch captured when it was deferred (None: use the active ones).
_bound: ContextVar[tuple[Fake, ...] | None] = ContextVar("afterward_http_fakes", default=None)

_METHOD_PREFIX = re.compile(r"([A-Z]+) +(.+)")


def response(
    body: object = None, status: int = 200, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """Build a canned ``httpx.Response`` for :func:`fake`.

    Example:
        >>> http.response({"confirmation": "ORD-123"}, 201)
        >>> http.response("down for maintenance", 503)
        >>> http.response(status=404)

    Args:
        body: ``str`` is sent as text, ``bytes`` as is, ``None`` as an empty body and
            anything else (dict, list, number...) as JSON.
        status: the status code.
        headers: extra response headers.

    Raises:
        ConfigError: ``status`` is not an int from 100 to 599.
    """
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ConfigError(f"http.response() status must be an int from 100 to 599, got {status!r}")
    if body is None:
        return httpx.Response(status, headers=headers)
    if isinstance(body, bytes):
        return httpx.Response(status, headers=headers, content=body)
    if isinstance(body, str):
        return httpx.Response(status, headers=headers, text=body)
    return httpx.Response(status, headers=headers, json=body)


def active_fakes() -> tuple[Fake, ...]:
    """The fakes requests in this context go to (innermost last); empty when none."""
    bound = _bound.get()
    if bound is not None:
        return bound
    with _lock:
        return tuple(_active)


class _Route:
    def __init__(self, pattern: str, value: FakeValue) -> None:
        match = _METHOD_PREFIX.fullmatch(pattern)
        self.method: str | None = match.group(1) if match else None
        url = match.group(2) if match else pattern
        self.pattern = pattern
        # `*` is the only wildcard; everything else is literal.
        self._regex = re.compile(".*".join(re.escape(part) for part in url.split("*")), re.S)
        self._schemeless = "://" not in url and not url.startswith("*")
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            self._values: list[FakeValue] | None = list(value)
        else:
            self._values = None
        for each in self._values if self._values is not None else [value]:
            if not isinstance(each, httpx.Response | BaseException) and not callable(each):
                raise ConfigError(
                    f"unusable fake value {each!r} for {pattern!r}: give http.response(...), "
                    "an exception, a callable or a list of those"
                )
        self._value = value
        self._lock = threading.Lock()

    def matches(self, request: httpx.Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        url = str(request.url)
        if self._schemeless:
            url = url.split("://", 1)[-1]
        return self._regex.fullmatch(url) is not None

    def next_value(self) -> FakeValue:
        if self._values is None:
            return self._value
        with self._lock:
            if not self._values:
                raise StrayRequestError(
                    f"the fake response sequence for {self.pattern!r} is exhausted"
                )
            return self._values.pop(0)


async def _answer(value: FakeValue, request: httpx.Request) -> httpx.Response:
    if isinstance(value, BaseException):
        raise value
    if isinstance(value, httpx.Response):
        # A fresh copy each time: the same canned response may answer many requests.
        return httpx.Response(
            value.status_code, headers=value.headers, content=value.content, request=request
        )
    if callable(value):
        result = value(request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, httpx.Response):
            raise ConfigError(f"a fake callable must return an httpx.Response, got {result!r}")
        return result
    raise ConfigError(f"unusable fake value {value!r}: give http.response(...) or a callable")


class FakeTransport(httpx.AsyncBaseTransport):
    """Answers requests from the active fakes (used by afterward's client while faking)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Record ``request`` on every active fake and answer it from the innermost match."""
        await request.aread()  # so tests can inspect request.content
        fakes = active_fakes()
        for each in fakes:
            each.requests.append(request)
        for each in reversed(fakes):
            route = each._match(request)
            if route is not None:
                return await _answer(route.next_value(), request)
        if any(each._prevent_strays for each in fakes):
            for each in fakes:
                each.stray_requests.append(request)
            raise StrayRequestError(
                f"no fake matches {request.method} {request.url} and stray requests are "
                "prevented: add a pattern to http.fake({...})"
            )
        return httpx.Response(200, request=request)


class Fake:
    """An active HTTP fake: canned responses by URL pattern, and the requests seen.

    Made by :func:`fake`. It is active from creation until :meth:`stop` (or the end
    of its ``with`` block, or of the ``afterward_http`` fixture). While any fake is
    active, no request made through ``afterward.http`` reaches the network.

    Attributes:
        requests: every ``httpx.Request`` sent while the fake was active, in order.
        stray_requests: the requests no pattern matched while strays were prevented.
    """

    def __init__(self, routes: Mapping[str, FakeValue] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.stray_requests: list[httpx.Request] = []
        self._routes: list[_Route] = []
        self._prevent_strays = False
        self.stub(routes or {})

    def stub(self, routes: Mapping[str, FakeValue]) -> Fake:
        """Add patterns; earlier patterns win, so put catch-alls (``"*"``) last.

        Returns:
            The fake itself, for chaining.
        """
        if not isinstance(routes, Mapping):
            raise ConfigError(
                f"http.fake() takes a dict of URL pattern -> response, got {routes!r}"
            )
        for pattern, value in routes.items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"a fake URL pattern must be a non-empty str, got {pattern!r}")
            self._routes.append(_Route(pattern, value))
        return self

    def prevent_stray_requests(self, prevent: bool = True) -> Fake:
        """Make a request no pattern matches raise :class:`~afterward.StrayRequestError`
        (recorded as that request's failure by ``pool`` and ``batch``) instead of
        getting an empty ``200`` response."""
        self._prevent_strays = prevent
        return self

    def _match(self, request: httpx.Request) -> _Route | None:
        return next((r for r in self._routes if r.matches(request)), None)

    # -- assertions -----------------------------------------------------------------

    def assert_sent(self, predicate: Callable[[httpx.Request], object]) -> None:
        """Fail unless at least one recorded request satisfies ``predicate``."""
        _check_predicate("assert_sent", predicate)
        if not any(predicate(r) for r in self.requests):
            raise AssertionError(f"no request sent matches the predicate; sent: {self._sent()}")

    def assert_not_sent(self, predicate: Callable[[httpx.Request], object]) -> None:
        """Fail if any recorded request satisfies ``predicate``."""
        _check_predicate("assert_not_sent", predicate)
        hits = [r for r in self.requests if predicate(r)]
        if hits:
            raise AssertionError(f"{len(hits)} request(s) match the predicate: {_describe(hits)}")

    def assert_sent_count(self, count: int) -> None:
        """Fail unless exactly ``count`` requests were recorded (attempts: a retry is one)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"assert_sent_count() needs an int >= 0, got {count!r}")
        if len(self.requests) != count:
            raise AssertionError(
                f"expected {count} request(s), {len(self.requests)} sent: {self._sent()}"
            )

    def _sent(self) -> str:
        return _describe(self.requests) or "none"

    # -- lifetime -------------------------------------------------------------------

    def start(self) -> Fake:
        """Activate the fake (done by :func:`fake` already); idempotent."""
        with _lock:
            if self not in _active:
                _active.append(self)
        return self

    def stop(self) -> None:
        """Deactivate the fake; requests go to the network again if no other is active."""
        with _lock:
            if self in _active:
                _active.remove(self)

    @property
    def active(self) -> bool:
        """Whether the fake currently answers requests."""
        with _lock:
            return self in _active

    def __enter__(self) -> Fake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Fake routes={len(self._routes)} requests={len(self.requests)}>"


def _check_predicate(what: str, predicate: object) -> None:
    if not callable(predicate):
        raise InvalidCallbackError(
            f"{what}() needs a callable taking the httpx.Request, got {predicate!r}"
        )


def _describe(requests: list[httpx.Request]) -> str:
    return ", ".join(f"{r.method} {r.url}" for r in requests)


def fake(routes: Mapping[str, FakeValue] | None = None) -> Fake:
    """Fake every request made through ``afterward.http``, starting now.

    Patterns match the *whole* URL, query string included; ``*`` matches any run of
    characters (``/`` included) and is the only wildcard. A pattern without a scheme
    matches any scheme (``"pay.test/*"``); ``"POST https://pay.test/*"`` also
    requires the method. Patterns are tried in order, across nested fakes innermost
    first. An unmatched request gets an empty ``200`` unless stray requests are
    prevented, and never reaches the network.

    Example:
        >>> with http.fake({"https://pay.test/*": http.response({"ok": True}),
        ...                 "*": http.response(status=404)}) as fake:
        ...     await http.post("https://pay.test/charge", json={"amount": 5})
        >>> fake.assert_sent(lambda r: r.url.path == "/charge")

    Args:
        routes: pattern -> an ``httpx.Response`` (see :func:`response`), an exception
            to raise, a callable ``(httpx.Request) -> httpx.Response`` (sync or async),
            or a list of those answering successive requests, each retry being one (an
            exhausted list raises :class:`~afterward.StrayRequestError`, which is not
            retried).

    Returns:
        The active :class:`Fake`; a context manager that stops it on exit.
    """
    return Fake(routes).start()


def prevent_stray_requests() -> Fake:
    """Make unmatched requests raise ``StrayRequestError`` until the innermost fake ends.

    Raises:
        ConfigError: no fake is active (call :func:`fake` first).
    """
    with _lock:
        innermost = _active[-1] if _active else None
    if innermost is None:
        raise ConfigError("http.prevent_stray_requests() needs an active http.fake()")
    return innermost.prevent_stray_requests()


@contextmanager
def bind(fakes: tuple[Fake, ...]) -> Iterator[None]:
    """Route this context's requests to ``fakes`` (a deferred batch's captured fakes)."""
    token = _bound.set(fakes)
    try:
        yield
    finally:
        _bound.reset(token)
