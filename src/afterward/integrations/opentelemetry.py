"""OpenTelemetry traces through every part of afterward::

    from afterward.integrations import opentelemetry as afterward_otel
    afterward_otel.instrument()          # the app's TracerProvider (or pass one)

Needs ``pip install 'afterward[otel]'`` (the OpenTelemetry API); the SDK, its exporter
and its sampler are the app's. Until :func:`instrument` runs, afterward imports none of
this and traces nothing (:mod:`afterward._telemetry` holds the one hook).

Spans, with OpenTelemetry's HTTP and messaging semantic conventions:

- ``GET`` (SERVER): a request through afterward's ASGI, WSGI or Django middleware, when
  no span is active yet (an outer instrumentation's SERVER span is used as it is); the
  incoming ``traceparent`` is its parent.
- ``defer <name>`` (INTERNAL): each deferred callback run, a child of the span it was
  deferred in *and* linked to it (it starts after that span, the response, has ended).
- ``POST`` (CLIENT): each ``afterward.http`` attempt; the request carries ``traceparent``.
- ``publish <topic>`` (PRODUCER): a publish; each record carries its ``traceparent``.
- ``process <topic>`` (CONSUMER): each handler run of a group, a child of the publish
  span read from the record: in whichever process, service or language consumes it.
- ``dispatch <job>`` (PRODUCER) and ``run <job>`` (CONSUMER): a job dispatch, whose
  trace context travels in the job's payload, and each of its attempts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import Token
from typing import Any
from urllib.parse import parse_qsl, urlencode

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from afterward import _telemetry
from afterward._context import correlation_id
from afterward._telemetry import AttributeValue

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_VERSION = "0.1.0"
#: Records and job payloads carry W3C trace context whatever the app's HTTP propagator.
_W3C = TraceContextTextMapPropagator()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE"})
_METHODS |= {"PATCH", "QUERY"}


def instrument(tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace afterward's requests, deferred work, HTTP calls, events and jobs.

    Idempotent: calling it again replaces the tracer (e.g. with another provider).

    Args:
        tracer_provider: the provider to take afterward's tracer from; by default the
            global one (``opentelemetry.trace.set_tracer_provider``), followed even when
            it is set after this call.
    """
    tracer = trace.get_tracer("afterward", _VERSION, tracer_provider=tracer_provider)
    _telemetry.tracing = _Tracing(tracer)


def uninstrument() -> None:
    """Stop tracing (spans already started still end)."""
    _telemetry.tracing = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in force."""
    return isinstance(_telemetry.tracing, _Tracing)


class _Span:
    """A span as the traced places see it (:class:`afterward._telemetry.SpanLike`)."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)
        if key == "http.response.status_code" and isinstance(value, int) and value >= 400:
            # A client span fails on any error status (a server span only on 5xx).
            self._span.set_attribute("error.type", str(value))
            self._span.set_status(Status(StatusCode.ERROR))

    def fail(self, error: BaseException) -> None:
        self._span.record_exception(error)
        self._span.set_attribute("error.type", type(error).__qualname__)
        self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class _ServerSpan:
    """A middleware's SERVER span (:class:`afterward._telemetry.ServerSpan`)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span, token: Token[otel_context.Context]) -> None:
        self._span = span
        self._token: Token[otel_context.Context] | None = token

    def detach(self) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None

    def end(self, status: int, error: BaseException | None = None) -> None:
        span = self._span
        if status:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            _Span(span).fail(error)
        elif status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def _remote(traceparent: str | None, tracestate: str | None) -> otel_context.Context | None:
    """The context a record's or payload's W3C headers name (``None``: the current)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _W3C.extract(carrier)


def _redacted(url: Any) -> str:
    """``url.full`` without credentials, and with every query value redacted (query
    strings often carry tokens and signatures)."""
    text = f"{url.scheme}://{url.host}"  # no userinfo: semantic conventions forbid it
    if url.port is not None:
        text += f":{url.port}"
    text += url.path
    if url.query:
        pairs = parse_qsl(url.query.decode("ascii", "replace"), keep_blank_values=True)
        text += "?" + urlencode([(k, "REDACTED") for k, _ in pairs])
    return str(text)


def _job_attributes(payload: Any, operation: str, kind: str) -> dict[str, AttributeValue]:
    return {
        "messaging.system": "afterward",
        "messaging.destination.name": payload.path,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.message.id": payload.id,
        "messaging.message.conversation_id": payload.correlation_id,
    }


class _Tracing:
    """afterward's hooks over one OpenTelemetry tracer (:class:`afterward._telemetry.Tracing`)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    # -- requests and deferred work ---------------------------------------------------

    def start_server(
        self,
        method: str,
        scheme: str,
        path: str,
        headers: Mapping[str, str],
        server: tuple[str, int | None] | None,
    ) -> _ServerSpan | None:
        if trace.get_current_span().get_span_context().is_valid:
            return None  # an outer instrumentation's SERVER span is this request's
        parent = propagate.extract(headers)
        known = method if method in _METHODS else "_OTHER"
        attributes: dict[str, AttributeValue] = {
            "http.request.method": known,
            "url.scheme": scheme,
            "url.path": path,
        }
        if server is not None:
            attributes["server.address"] = server[0]
            if server[1] is not None:
                attributes["server.port"] = server[1]
        agent = headers.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        cid = correlation_id()
        if cid is not None:
            attributes["afterward.correlation_id"] = cid
        span = self._tracer.start_span(
            known if known != "_OTHER" else "HTTP",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        return _ServerSpan(span, otel_context.attach(trace.set_span_in_context(span, parent)))

    def capture(self) -> object | None:
        current = otel_context.get_current()
        return current if trace.get_current_span(current).get_span_context().is_valid else None

    @contextmanager
    def deferred(self, name: str, origin: object | None) -> Iterator[_Span]:
        parent = origin if isinstance(origin, otel_context.Context) else None
        links = [] if parent is None else [Link(trace.get_current_span(parent).get_span_context())]
        attributes: dict[str, AttributeValue] = {"afterward.defer.name": name}
        cid = correlation_id()
        if cid is not None:
            attributes["afterward.correlation_id"] = cid
        with self._tracer.start_as_current_span(
            f"defer {name}",
            context=parent,
            kind=SpanKind.INTERNAL,
            links=links,
            attributes=attributes,
        ) as span:
            yield _Span(span)

    # -- HTTP -------------------------------------------------------------------------

    @contextmanager
    def http_client(self, request: Any) -> Iterator[_Span]:
        url = request.url
        method = request.method if request.method in _METHODS else "_OTHER"
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.full": _redacted(url),
            "server.address": url.host,
        }
        port = url.port or {"https": 443, "http": 80}.get(url.scheme)
        if port is not None:
            attributes["server.port"] = port
        with self._tracer.start_as_current_span(
            method if method != "_OTHER" else "HTTP", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            propagate.inject(request.headers)
            yield _Span(span)

    # -- events and jobs --------------------------------------------------------------

    @contextmanager
    def _span(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        context: otel_context.Context | None = None,
        links: Sequence[Link] = (),
    ) -> Iterator[_Span]:
        with self._tracer.start_as_current_span(
            name, context=context, kind=kind, attributes=attributes, links=links
        ) as span:
            yield _Span(span)

    def publish(self, system: str, topic: str) -> AbstractContextManager[_Span]:
        attributes: dict[str, AttributeValue] = {
            "messaging.system": system,
            "messaging.destination.name": topic,
            "messaging.operation.name": "publish",
            "messaging.operation.type": "send",
        }
        return self._span(f"publish {topic}", SpanKind.PRODUCER, attributes)

    def consume(self, system: str, group: str, event: Any) -> AbstractContextManager[_Span]:
        attributes: dict[str, AttributeValue] = {
            "messaging.system": system,
            "messaging.destination.name": event.topic,
            "messaging.consumer.group.name": group,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.message.id": event.id,
            "messaging.message.conversation_id": event.correlation_id or "",
            "afterward.attempt": event.attempt,
        }
        parent = _remote(event.traceparent, event.tracestate)
        return self._span(f"process {event.topic}", SpanKind.CONSUMER, attributes, parent)

    def consume_batch(
        self, system: str, group: str, topic: str, events: Sequence[Any]
    ) -> AbstractContextManager[_Span]:
        # A batch has no one parent: each event's publish is a link (semantic conventions).
        links = []
        for event in events:
            remote = _remote(event.traceparent, event.tracestate)
            if remote is not None:
                links.append(Link(trace.get_current_span(remote).get_span_context()))
        attributes: dict[str, AttributeValue] = {
            "messaging.system": system,
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.batch.message_count": len(events),
        }
        return self._span(f"process {topic}", SpanKind.CONSUMER, attributes, links=links)

    @contextmanager
    def dispatch(self, connection: str, payload: Any) -> Iterator[_Span]:
        attributes = _job_attributes(payload, "dispatch", "send")
        attributes["afterward.job.connection"] = connection
        with self._span(f"dispatch {payload.path}", SpanKind.PRODUCER, attributes) as span:
            payload.traceparent, payload.tracestate = self.current_trace()
            yield span

    def job(self, queue: str, payload: Any) -> AbstractContextManager[_Span]:
        attributes = _job_attributes(payload, "run", "process")
        attributes["afterward.job.queue"] = queue
        attributes["afterward.attempt"] = payload.attempt
        parent = _remote(payload.traceparent, payload.tracestate)
        return self._span(f"run {payload.path}", SpanKind.CONSUMER, attributes, parent)

    # -- context for records and logs -------------------------------------------------

    def current_trace(self) -> tuple[str | None, str | None]:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        return carrier.get("traceparent"), carrier.get("tracestate")

    def current_ids(self) -> tuple[str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
