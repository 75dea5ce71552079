"""WSGI middleware (Flask, Bottle, Falcon, plain WSGI)::

    from afterward.integrations.wsgi import DeferMiddleware
    app.wsgi_app = DeferMiddleware(app.wsgi_app)       # Flask

Callbacks start once the server has consumed and closed the response iterable, on
afterward's background loop and worker threads: the WSGI worker thread returns to the
server at once and is never held by deferred work.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from afterward import _telemetry
from afterward._context import _correlation_id
from afterward.defer import DeferScope, _current_scope
from afterward.integrations._http import HEADER, choose_correlation_id, environ_span

__all__ = ["DeferMiddleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class _Response:
    """The app's response iterable, run in the request's context, finishing the scope
    when the server closes it."""

    def __init__(
        self,
        body: Iterable[bytes],
        context: contextvars.Context,
        defer_scope: DeferScope,
        status: list[int],
        span: _telemetry.ServerSpan | None,
    ) -> None:
        self._span = span
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._context = context
        self._scope = defer_scope
        self._status = status
        self._failed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._body)
        try:
            return self._context.run(next, self._iterator)
        except StopIteration:
            raise
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            status = self._status[0]
            if self._span is not None:  # its context is this request's alone: no detach
                self._span.end(status)
            self._scope.finish(ok=not self._failed and 0 < status < 400)


class DeferMiddleware:
    """Open a defer scope per request and run it after the response was sent.

    Same rules as the ASGI middleware: status >= 400 or an exception means only
    ``always=True`` callbacks run; the correlation ID comes from ``X-Correlation-ID``,
    else ``X-Request-ID``, else a new UUID, and is echoed in the response.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        cid = choose_correlation_id(
            environ.get("HTTP_X_CORRELATION_ID"), environ.get("HTTP_X_REQUEST_ID")
        )
        defer_scope = DeferScope(cid)
        status = [0]

        def start_with_id(
            status_line: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            status[0] = int(status_line.split(" ", 1)[0])
            if not any(k.lower() == "x-correlation-id" for k, _ in headers):
                headers = [*headers, (HEADER, cid)]
            return start_response(status_line, headers, exc_info)

        # The whole request (call and iteration) runs in one context of its own, so
        # defer() works in streamed bodies too and nothing leaks into the server thread.
        context = contextvars.copy_context()
        context.run(_current_scope.set, defer_scope)
        context.run(_correlation_id.set, cid)
        span = None if _telemetry.tracing is None else context.run(environ_span, environ)
        try:
            body = context.run(self.app, environ, start_with_id)
        except BaseException as exc:
            if span is not None:
                span.end(status[0], exc)
            defer_scope.finish(ok=False)
            raise
        return _Response(body, context, defer_scope, status, span)
