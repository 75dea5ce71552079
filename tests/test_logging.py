from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from afterward import ConfigError, correlate, correlation_id
from afterward.logging import CorrelationIdFilter, JsonFormatter


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


def _json_lines(log: logging.Logger, stream: io.StringIO) -> list[dict[str, object]]:
    for handler in log.handlers:
        handler.flush()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def json_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(static={"service": "shop"}))
    log = logging.getLogger("afterward.test.json")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)


def test_json_formatter_writes_one_object_per_line(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = json_logger
    with correlate("order-7"):
        log.warning("paid %s\nin full", 12, extra={"order_id": 7})
    try:
        raise ValueError("card declined")
    except ValueError:
        log.exception("checkout failed")
    assert stream.getvalue().count("\n") == 2  # the newline in the message is escaped
    first, second = _json_lines(log, stream)
    assert first["time"].endswith("Z") and len(first["time"]) == 24  # type: ignore[union-attr]
    assert datetime.fromisoformat(str(first["time"]).replace("Z", "+00:00"))
    assert {k: first[k] for k in ("level", "logger", "message", "correlation_id")} == {
        "level": "WARNING",
        "logger": "afterward.test.json",
        "message": "paid 12\nin full",
        "correlation_id": "order-7",
    }
    assert (first["order_id"], first["service"]) == (7, "shop")
    assert "trace_id" not in first and "exception" not in first
    assert second["level"] == "ERROR" and "correlation_id" not in second
    assert "ValueError: card declined" in str(second["exception"])
    assert str(second["exception"]).startswith("Traceback (most recent call last)")


def test_json_formatter_adds_the_trace_and_span_ids_when_traced(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from afterward.integrations import opentelemetry as afterward_otel

    log, stream = json_logger
    provider = TracerProvider()
    afterward_otel.instrument(provider)
    try:
        with provider.get_tracer("test").start_as_current_span("work") as span:
            log.info("inside")
        log.info("outside")
    finally:
        afterward_otel.uninstrument()
    inside, outside = _json_lines(log, stream)
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside
