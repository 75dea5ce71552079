"""What the HTTP middlewares share: choosing the request's correlation ID, and the
SERVER span of a WSGI-style request (WSGI, Django) when tracing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afterward import _telemetry
from afterward._context import is_valid_correlation_id, new_correlation_id

__all__ = ["HEADER", "choose_correlation_id", "environ_span"]

#: The response header that echoes the correlation ID.
HEADER = "X-Correlation-ID"


def choose_correlation_id(correlation: str | None, request_id: str | None) -> str:
    """The request's ``X-Correlation-ID``, else its ``X-Request-ID``, else a new UUID.

    A header value that is not 1-200 printable ASCII characters is ignored, so a client
    cannot inject log lines or headers through it.
    """
    if correlation and is_valid_correlation_id(correlation):
        return correlation
    if request_id and is_valid_correlation_id(request_id):
        return request_id
    return new_correlation_id()


def environ_span(environ: Mapping[str, Any]) -> _telemetry.ServerSpan | None:
    """The SERVER span of the request a WSGI ``environ`` (or Django's ``META``)
    describes; only called while tracing."""
    assert _telemetry.tracing is not None
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    port = str(environ.get("SERVER_PORT") or "")
    return _telemetry.tracing.start_server(
        str(environ.get("REQUEST_METHOD", "GET")),
        str(environ.get("wsgi.url_scheme", "http")),
        str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "/")),
        headers,
        (str(environ.get("SERVER_NAME", "")), int(port) if port.isdigit() else None),
    )
