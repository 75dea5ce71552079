from __future__ import annotations

import logging

import pytest

from afterward import ConfigError, correlate, correlation_id
from afterward.logging import CorrelationIdFilter


def _record() -> logging.LogRecord:
    return logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)


def test_filter_adds_the_bound_correlation_id() -> None:
    log_filter = CorrelationIdFilter()
    with correlate("log-1"):
        record = _record()
        assert log_filter.filter(record)
        assert record.correlation_id == "log-1"  # type: ignore[attr-defined]
    outside = _record()
    log_filter.filter(outside)
    assert outside.correlation_id == "-"  # type: ignore[attr-defined]


def test_correlate_nests_and_restores() -> None:
    assert correlation_id() is None
    with correlate() as outer:
        assert correlation_id() == outer and len(outer) == 36
        with correlate("inner"):
            assert correlation_id() == "inner"
        assert correlation_id() == outer
    assert correlation_id() is None


@pytest.mark.parametrize("bad", ["", "has space", "x" * 201, 7])
def test_correlate_rejects_unsafe_ids(bad: object) -> None:
    with pytest.raises(ConfigError, match="correlation ID"), correlate(bad):  # type: ignore[arg-type]
        pass
