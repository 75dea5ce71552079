"""Pure ASGI middleware: defer scopes per request, correlation IDs, drain on shutdown.

Works with any ASGI app (Starlette, FastAPI, Litestar, Quart...)::

    from afterward.integrations.asgi import DeferMiddleware
    app = DeferMiddleware(app)           # or: app.add_middleware(DeferMiddleware)

It is deliberately not a ``BaseHTTPMiddleware``: it never buffers or wraps the body
stream, so streaming responses and the framework's own background tasks keep working.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from afterward import _runtime, _telemetry
from afterward._config import check_grace, settings
from afterward._context import _correlation_id
from afterward.defer import DeferScope, _current_scope
from afterward.integrations._http import HEADER, choose_correlation_id

__all__ = ["DeferMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER_BYTES = HEADER.lower().encode("latin-1")


def _server_span(scope: Scope) -> _telemetry.ServerSpan | None:
    """The request's SERVER span (only called while tracing)."""
    assert _telemetry.tracing is not None
    server = scope.get("server")
    return _telemetry.tracing.start_server(
        scope.get("method", "GET"),
        scope.get("scheme", "ws" if scope["type"] == "websocket" else "http"),
        scope.get("path", "/"),
        _telemetry.header_map(scope.get("headers") or ()),
        (server[0], server[1]) if server else None,
    )


class DeferMiddleware:
    """Open a defer scope per HTTP/WebSocket connection and run it after the response.

    - Callbacks start after the final body chunk was handed to the server, in the
      background: the server can serve the next request on the connection at once.
    - Status >= 400 or an exception from the app: only ``always=True`` callbacks run.
    - Correlation ID from ``X-Correlation-ID``, else ``X-Request-ID``, else a new
      UUID; echoed in the response's ``X-Correlation-ID``.
    - On lifespan shutdown, deferred work is drained for ``grace_period`` seconds
      (default: ``afterward.configure(grace_period=...)``, 10 s) before the app's own
      shutdown runs; what is still unfinished is logged as lost.

    Args:
        app: the ASGI application to wrap.
        grace_period: seconds to drain at shutdown; ``None`` uses the global setting.

    Raises:
        ConfigError: ``grace_period`` is not ``None`` or seconds >= 0.
    """

    def __init__(self, app: ASGIApp, *, grace_period: float | None = None) -> None:
        self.app = app
        self.grace_period = check_grace("DeferMiddleware grace_period", grace_period)

    # One function on purpose: on the request path every extra call costs (benchmarks.md).
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, self._draining(receive) if kind == "lifespan" else receive, send)
            return
        given = request_id = None
        for key, value in scope.get("headers") or ():  # ASGI header names are lowercase
            if key == _HEADER_BYTES:
                given = value.decode("latin-1")
            elif key == b"x-request-id":
                request_id = value.decode("latin-1")
        cid = choose_correlation_id(given, request_id)
        defer_scope = DeferScope(cid)
        status = 200 if kind == "websocket" else 0

        # A plain function returning the server's own awaitable: no extra coroutine
        # per message.
        def send_with_id(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers") or []
                for key, _ in headers:
                    if key.lower() == _HEADER_BYTES:  # the app set its own: keep it
                        break
                else:
                    message["headers"] = [*headers, (_HEADER_BYTES, cid.encode("latin-1"))]
            return send(message)

        scope_token = _current_scope.set(defer_scope)
        cid_token = _correlation_id.set(cid)
        # Untraced, this is two bytecodes on the request's path (docs/benchmarks.md).
        span = _telemetry.tracing and _server_span(scope)
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            if span:
                span.detach()
                span.end(status, exc)
            defer_scope.finish(ok=False)
            raise
        else:
            if span:
                span.detach()
                span.end(status)
            defer_scope.finish(ok=0 < status < 400)
        finally:
            _current_scope.reset(scope_token)
            _correlation_id.reset(cid_token)

    def _draining(self, receive: Receive) -> Receive:
        async def receive_and_drain() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                grace = settings.grace_period if self.grace_period is None else self.grace_period
                await _runtime.drain(grace)
            return message

        return receive_and_drain
