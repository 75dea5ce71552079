"""Django middleware and ``atomic``-aware defer::

    MIDDLEWARE = ["afterward.integrations.django.DeferMiddleware", ...]

Put it first so it wraps everything. It works under WSGI and ASGI (sync and async
views). Callbacks start when Django closes the response (after the server sent it).
A callback deferred inside ``transaction.atomic()`` joins the request's scope only when
the outermost block commits (Django's ``on_commit``) and is dropped on rollback,
savepoints included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponseBase

from afterward import _telemetry
from afterward._context import _correlation_id
from afterward._telemetry import ServerSpan
from afterward._transactions import register_provider
from afterward.defer import DeferScope, _current_scope
from afterward.integrations._http import HEADER, choose_correlation_id, environ_span

__all__ = ["DeferMiddleware", "install"]


class _AtomicBlock:
    """An open Django ``atomic`` block on one database alias."""

    def __init__(self, alias: str) -> None:
        self.owner: Any = alias

    def on_commit(self, fn: Callable[[], None]) -> None:
        transaction.on_commit(fn, using=self.owner)


def _open_atomic_block() -> _AtomicBlock | None:
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            return _AtomicBlock(connection.alias)
    return None


def install() -> None:
    """Make :func:`afterward.defer` wait for Django ``atomic`` blocks (idempotent).

    The middleware calls it; call it yourself when you defer outside requests.
    """
    register_provider(_open_atomic_block)


class DeferMiddleware:
    """Open a defer scope per request; run it once Django closed the response.

    Status >= 400 (Django turns exceptions into 500 responses) means only
    ``always=True`` callbacks run. The correlation ID comes from ``X-Correlation-ID``,
    else ``X-Request-ID``, else a new UUID, and is echoed in the response.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        install()

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        defer_scope, tokens = self._open(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            self._failed(defer_scope, tokens, exc)
            raise
        finally:
            self._close(tokens)
        return self._attach(response, defer_scope, tokens[2])  # type: ignore[arg-type]

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        defer_scope, tokens = self._open(request)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        except BaseException as exc:
            self._failed(defer_scope, tokens, exc)
            raise
        finally:
            self._close(tokens)
        return self._attach(response, defer_scope, tokens[2])

    @staticmethod
    def _open(request: HttpRequest) -> tuple[DeferScope, tuple[Any, Any, ServerSpan | None]]:
        cid = choose_correlation_id(
            request.META.get("HTTP_X_CORRELATION_ID"), request.META.get("HTTP_X_REQUEST_ID")
        )
        defer_scope = DeferScope(cid)
        tokens = (_current_scope.set(defer_scope), _correlation_id.set(cid))
        span = None if _telemetry.tracing is None else environ_span(request.META)
        return defer_scope, (*tokens, span)

    @staticmethod
    def _close(tokens: tuple[Any, Any, ServerSpan | None]) -> None:
        if tokens[2] is not None:
            tokens[2].detach()
        _current_scope.reset(tokens[0])
        _correlation_id.reset(tokens[1])

    @staticmethod
    def _failed(
        defer_scope: DeferScope, tokens: tuple[Any, Any, ServerSpan | None], exc: BaseException
    ) -> None:
        if tokens[2] is not None:
            tokens[2].end(0, exc)
        defer_scope.finish(ok=False)

    @staticmethod
    def _attach(
        response: HttpResponseBase, defer_scope: DeferScope, span: ServerSpan | None
    ) -> HttpResponseBase:
        if not response.has_header(HEADER):
            response[HEADER] = defer_scope.correlation_id
        status = response.status_code
        ok = status < 400

        def closed() -> None:
            if span is not None:
                span.end(status)
            defer_scope.finish(ok=ok)

        # Django (and its test client) calls these when the server has sent the response.
        response._resource_closers.append(closed)  # type: ignore[attr-defined]
        return response
