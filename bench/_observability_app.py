"""The apps ``bench observability`` serves (uvicorn ``--factory``), one per process:
the same trivial Starlette endpoint behind afterward's middleware or its peers'."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def none(request: Request) -> Response:
    return PlainTextResponse("ok")


def bare() -> Any:
    return Starlette(routes=[Route("/none", none)])


def afterward() -> Any:
    from afterward.integrations.asgi import DeferMiddleware

    return DeferMiddleware(bare())


def peer() -> Any:
    """asgi-correlation-id, sending the same response header as afterward."""
    from asgi_correlation_id import CorrelationIdMiddleware

    return CorrelationIdMiddleware(bare(), header_name="X-Correlation-ID")


def _provider() -> Any:
    # Spans are made, sampled and ended, and exported nowhere: the tracing work alone.
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider()


def afterward_traced() -> Any:
    from afterward.integrations import opentelemetry as afterward_otel

    afterward_otel.instrument(_provider())
    return afterward()


def peer_traced() -> Any:
    """opentelemetry-instrumentation-asgi around asgi-correlation-id."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(peer(), tracer_provider=_provider())
