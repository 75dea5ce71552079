"""Logging support: put the correlation ID on every log record.

Example:
    >>> handler = logging.StreamHandler()
    >>> handler.addFilter(CorrelationIdFilter())
    >>> handler.setFormatter(logging.Formatter("%(correlation_id)s %(message)s"))
"""

from __future__ import annotations

import logging

from afterward._context import correlation_id

__all__ = ["CorrelationIdFilter"]


class CorrelationIdFilter(logging.Filter):
    """Set ``record.correlation_id`` to the current correlation ID.

    Records logged outside any request, job or handler get ``default`` (``"-"``).
    A record that already carries an ID (afterward's own failure logs do) keeps it.
    """

    def __init__(self, name: str = "", default: str = "-") -> None:
        super().__init__(name)
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``record.correlation_id`` (unless it has one) and keep the record."""
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = correlation_id() or self.default
        return True
