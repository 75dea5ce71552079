"""The one seam between afterward's hot paths and a tracer (OpenTelemetry).

:data:`tracing` is ``None`` until :func:`afterward.integrations.opentelemetry.instrument`
sets it. Every traced place (the HTTP middlewares, ``defer`` and the runtime, ``http``
attempts, ``publish``, event handlers, job dispatches and attempts) reads this one
module global and does nothing more when it is ``None``: an app that never instruments
imports no tracing library and pays one global lookup per request, callback or event.

The core knows only the small protocols below; the OpenTelemetry types stay in the
integration. Opaque values (``object``) are the tracer's own (a span context).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["ServerSpan", "SpanLike", "Tracing", "header_map", "tracing"]

AttributeValue = str | int | float | bool


class SpanLike(Protocol):
    """What a traced place may do with its span."""

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (semantic-convention names)."""

    def fail(self, error: BaseException) -> None:
        """Mark the span failed by ``error`` (caught, not raised through the span)."""


class ServerSpan(Protocol):
    """A request's SERVER span, started by a middleware."""

    def detach(self) -> None:
        """Stop being the current span (in the context that started it)."""

    def end(self, status: int, error: BaseException | None = None) -> None:
        """End the span with the response's status (0: no response) or the error."""


class Tracing(Protocol):
    """What an instrumentation supplies (see the module docstring)."""

    def start_server(
        self,
        method: str,
        scheme: str,
        path: str,
        headers: Mapping[str, str],
        server: tuple[str, int | None] | None,
    ) -> ServerSpan | None:
        """Start and make current the SERVER span of a request, with the trace context
        of its ``headers`` (lower-case names); ``None`` when a span is already active (an
        outer instrumentation made one)."""

    def capture(self) -> object | None:
        """The current span's context (a deferred callback links to it), or ``None``."""

    def deferred(self, name: str, origin: object | None) -> AbstractContextManager[SpanLike]:
        """The span of a deferred callback run, linked to ``origin`` (:meth:`capture`)."""

    def http_client(self, request: Any) -> AbstractContextManager[SpanLike]:
        """The CLIENT span of one HTTP attempt of ``request`` (an ``httpx.Request``),
        whose headers it gives the trace context (``traceparent``)."""

    def publish(self, system: str, topic: str) -> AbstractContextManager[SpanLike]:
        """The PRODUCER span of a publish to ``topic`` on ``system`` (the backend's URL
        scheme): the trace context written to the records (:meth:`current_trace`)."""

    def consume(self, system: str, group: str, event: Any) -> AbstractContextManager[SpanLike]:
        """The CONSUMER span of one handler run of ``group`` on ``event`` (an
        :class:`~afterward.Event`), continuing the trace the event carries."""

    def consume_batch(
        self, system: str, group: str, topic: str, events: Sequence[Any]
    ) -> AbstractContextManager[SpanLike]:
        """The CONSUMER span of one batch handler run, linked to each event's trace."""

    def dispatch(self, connection: str, payload: Any) -> AbstractContextManager[SpanLike]:
        """The PRODUCER span of a job dispatch (``payload``: a ``JobPayload``, whose trace
        context is set inside it)."""

    def job(self, queue: str, payload: Any) -> AbstractContextManager[SpanLike]:
        """The CONSUMER span of one job attempt, continuing the dispatch's trace."""

    def current_trace(self) -> tuple[str | None, str | None]:
        """The current ``traceparent`` and ``tracestate`` (W3C), to write to a record."""

    def current_ids(self) -> tuple[str, str] | None:
        """The current trace and span IDs in hex, for log records; ``None`` outside."""


#: The active tracing, or ``None`` (the default: nothing is traced, nothing costs).
tracing: Tracing | None = None


def header_map(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs as ``{lower-case name: value}`` (for :meth:`Tracing.start_server`)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in pairs}
