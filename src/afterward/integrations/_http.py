"""What the HTTP middlewares share: choosing the request's correlation ID."""

from __future__ import annotations

from afterward._context import is_valid_correlation_id, new_correlation_id

__all__ = ["HEADER", "choose_correlation_id"]

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
