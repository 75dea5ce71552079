"""Retries of one request against a real server: conditions, methods, Retry-After, logs."""

from __future__ import annotations

import email.utils
import logging
import socket
import time

import httpx
import pytest

import afterward
from afterward import ConfigError, InvalidCallbackError, http
from afterward.http import _retry
from tests.http.conftest import Server, tag


def failing(
    server: Server, n: int, code: int, t: str, method: str = "GET", **params: object
) -> http.PendingRequest:
    """A request the server answers ``code`` ``n`` times (for tag ``t``), then 200."""
    return http.request(method, f"{server.url}/fail/{n}/{code}", params={"tag": t, **params})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed on exit: connections are refused


@pytest.mark.parametrize("n", [1, 3])
async def test_a_server_failing_n_times_then_succeeding(server: Server, n: int) -> None:
    t = tag()
    response = await failing(server, n, 503, t).retry(n, backoff=0.01)
    assert response.status_code == 200
    assert response.json() == {"attempt": n + 1}
    assert server.state.hits[t] == n + 1
    assert afterward.stats()["http.retries"] == n


async def test_when_retries_run_out_the_last_response_is_returned(server: Server) -> None:
    t = tag()
    response = await failing(server, 5, 502, t).retry(2, backoff=0)
    assert response.status_code == 502
    assert server.state.hits[t] == 3
    stats = afterward.stats()
    assert (stats["http.retries"], stats["http.retries_exhausted"]) == (2, 1)


@pytest.mark.parametrize(
    ("code", "retried"),
    [(429, True), (500, True), (599, True), (400, False), (404, False), (409, False)],
)
async def test_default_conditions_are_429_and_5xx(server: Server, code: int, retried: bool) -> None:
    t = tag()
    response = await failing(server, 1, code, t).retry(1, backoff=0)
    assert response.status_code == (200 if retried else code)
    assert server.state.hits[t] == (2 if retried else 1)


async def test_a_refused_connection_is_retried_then_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "afterward.http")
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(httpx.ConnectError):
        await http.get(url).retry(2, backoff=0)
    assert afterward.stats()["http.retries"] == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "afterward.http"]
    assert len(messages) == 3
    assert all(m.startswith(f"retrying GET {url} after ConnectError") for m in messages[:2])
    assert messages[2].startswith(f"gave up on GET {url} after 3 attempts: ConnectError")


async def test_timeouts_are_transport_errors_and_retried(server: Server) -> None:
    with pytest.raises(httpx.TimeoutException):
        await http.get(f"{server.url}/hang", timeout=0.2).retry(1, backoff=0)
    assert afterward.stats()["http.retries"] == 1


@pytest.mark.parametrize(
    ("method", "retried"),
    [
        ("GET", True),
        ("HEAD", True),
        ("PUT", True),
        ("DELETE", True),
        ("OPTIONS", True),
        ("POST", False),
        ("PATCH", False),
    ],
)
async def test_only_idempotent_methods_are_retried_by_default(
    server: Server, method: str, retried: bool
) -> None:
    t = tag()
    response = await failing(server, 1, 503, t, method).retry(3, backoff=0)
    assert server.state.hits[t] == (2 if retried else 1)
    assert response.status_code == (200 if retried else 503)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_and_patch_are_retried_with_an_idempotency_key_or_when(
    server: Server, method: str
) -> None:
    keyed, decided = tag(), tag()
    url = f"{server.url}/fail/1/503"
    with_key = http.request(
        method, url, params={"tag": keyed}, json={}, headers={"idempotency-KEY": "order-7"}
    )
    assert (await with_key.retry(1, backoff=0)).status_code == 200
    with_when = http.request(method, url, params={"tag": decided}, json={})
    when = with_when.retry(1, backoff=0, when=lambda r: getattr(r, "status_code", 0) == 503)
    assert (await when).status_code == 200
    assert (server.state.hits[keyed], server.state.hits[decided]) == (2, 2)


async def test_when_decides_instead_of_the_default_conditions(server: Server) -> None:
    conflict, unavailable, pending = tag(), tag(), tag()

    def on_conflict(outcome: httpx.Response | Exception) -> bool:
        return isinstance(outcome, httpx.Response) and outcome.status_code == 409

    async def until_third_attempt(outcome: httpx.Response | Exception) -> bool:
        return isinstance(outcome, httpx.Response) and outcome.json()["attempt"] < 3

    assert (await failing(server, 1, 409, conflict).retry(1, 0, on_conflict)).status_code == 200
    assert (await failing(server, 1, 503, unavailable).retry(1, 0, on_conflict)).status_code == 503
    # An async when, retrying a 200 (the server says "not ready" in its body).
    response = await failing(server, 0, 500, pending).retry(3, 0, until_third_attempt)
    assert response.json() == {"attempt": 3}
    assert [server.state.hits[t] for t in (conflict, unavailable, pending)] == [2, 1, 3]


async def test_a_raising_when_makes_the_outcome_final_and_is_logged(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    t = tag()

    def broken(outcome: object) -> bool:
        raise RuntimeError("bug in when")

    with afterward.correlate("cid-when"):
        response = await failing(server, 1, 503, t).retry(3, backoff=0, when=broken)
    assert response.status_code == 503
    assert server.state.hits[t] == 1
    assert afterward.stats()["hooks.failed"] == 1
    (record,) = [r for r in caplog.records if r.name == "afterward.http"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "cid-when" in record.getMessage()


async def test_each_retry_is_logged_with_the_correlation_id(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    t = tag()
    caplog.set_level(logging.WARNING, "afterward.http")
    with afterward.correlate("cid-retry"):
        await failing(server, 2, 503, t, token="secret").retry(2, backoff=0)
    records = [r for r in caplog.records if r.name == "afterward.http"]
    assert len(records) == 2
    for n, record in enumerate(records, 1):
        message = record.getMessage()
        assert record.correlation_id == "cid-retry"  # type: ignore[attr-defined]
        assert "correlation_id=cid-retry" in message
        assert f"retry {n} of 2" in message and "HTTP 503" in message
        assert "secret" not in message  # the query string is left out of logs
    assert server.state.correlation_ids[t] == ["cid-retry"] * 3  # every attempt carries it


async def test_retry_after_in_seconds_is_honoured(server: Server) -> None:
    t = tag()
    response = await failing(server, 1, 429, t, after="1").retry(1, backoff=0)
    assert response.status_code == 200
    first, second = server.state.arrivals[t]
    assert second - first >= 0.95, second - first  # backoff=0: only Retry-After waited


async def test_retry_after_as_an_http_date_is_honoured(server: Server) -> None:
    t = tag()
    response = await failing(server, 1, 503, t, date_in="2").retry(1, backoff=0)
    assert response.status_code == 200
    (sent,) = server.state.retry_after[t]
    date = email.utils.parsedate_to_datetime(sent).timestamp()
    first, second = server.state.arrivals[t]
    assert second >= date - 0.05, (second, date)  # waited until the date (to the second)
    assert second - first >= 0.9  # a whole-second date 2 s ahead: at least 1 s away


async def test_a_long_retry_after_is_capped(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same code path as the real 60 s cap, with a cap a test can wait for.
    monkeypatch.setattr(_retry, "RETRY_AFTER_CAP", 0.4)
    t = tag()
    start = time.monotonic()
    response = await failing(server, 1, 429, t, after="3600").retry(1, backoff=0)
    assert response.status_code == 200
    first, second = server.state.arrivals[t]
    assert 0.35 <= second - first < 3, second - first
    assert time.monotonic() - start < 3


def test_retry_after_values_and_the_60_second_cap() -> None:
    def after(value: str) -> float | None:
        return _retry.retry_after(http.response(headers={"Retry-After": value}), now=lambda: 1e9)

    assert _retry.RETRY_AFTER_CAP == 60
    assert after("3") == 3.0
    assert after("3600") == 60.0
    assert after(email.utils.formatdate(1e9 + 30, usegmt=True)) == 30.0
    assert after(email.utils.formatdate(1e9 + 3600, usegmt=True)) == 60.0
    assert after(email.utils.formatdate(1e9 - 30, usegmt=True)) == 0.0  # already past
    zoneless = email.utils.formatdate(1e9 + 20)  # "... -0000": UTC by RFC 5322
    assert zoneless.endswith("-0000") and after(zoneless) == 20.0
    for garbage in ("soon", "-5", "nan", "inf", ""):
        assert after(garbage) is None
    assert _retry.retry_after(http.response()) is None
    # Retry-After replaces the backoff (no jitter); without it the wait is jittered.
    policy = http.Retry(1, backoff=10)
    assert policy.wait(1, http.response(status=429, headers={"Retry-After": "2"})) == 2.0
    waits = {policy.wait(1, None) for _ in range(50)}
    assert all(0 <= w <= 10 for w in waits) and len(waits) > 1


def test_backoff_steps_last_one_repeats_with_full_jitter() -> None:
    policy = http.Retry(5, backoff=(0, 0.5))
    assert policy.backoff == (0.0, 0.5)
    assert policy.wait(1, None) == 0.0
    assert all(0 <= policy.wait(n, None) <= 0.5 for n in (2, 3, 9) for _ in range(20))
    assert http.Retry(1).backoff == (0.1, 0.5, 2.0)  # the contract's default
    assert http.Retry(1, backoff=0.3).backoff == (0.3,)


async def test_a_request_waiting_to_retry_holds_no_slot(server: Server) -> None:
    retried, other = tag(), tag()
    results = await http.pool(
        [
            failing(server, 1, 503, retried, after="1").retry(1, backoff=0),
            http.get(f"{server.url}/echo", params={"tag": other}),
        ],
        concurrency=1,
    )
    assert [r.status_code for r in results] == [200, 200]  # type: ignore[union-attr]
    # With one slot, the second request went while the first slept off its 503.
    assert server.state.arrivals[other][0] < server.state.arrivals[retried][1]


def test_retry_returns_a_new_request() -> None:
    plain = http.get("https://x.test/", params={"a": "1"})
    retried = plain.retry(2)
    assert plain.retry_policy is None
    assert retried.retry_policy == http.Retry(2)
    assert (retried.method, retried.url, retried.options) == (
        "GET",
        "https://x.test/",
        plain.options,
    )
    assert retried.options is not plain.options
    assert retried.retry(0).retry_policy == http.Retry(0)


@pytest.mark.parametrize("times", [-1, True, 1.5, "3", None])
def test_bad_times_are_refused(times: object) -> None:
    with pytest.raises(ConfigError, match="retry times must be an int >= 0"):
        http.get("https://x.test/").retry(times)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "backoff", [-1, float("nan"), float("inf"), "1", b"\x01", [0.1, -1], [True], None]
)
def test_bad_backoff_is_refused(backoff: object) -> None:
    with pytest.raises(ConfigError, match="backoff"):
        http.get("https://x.test/").retry(1, backoff=backoff)  # type: ignore[arg-type]


def test_a_non_callable_when_is_refused() -> None:
    with pytest.raises(InvalidCallbackError, match="when="):
        http.get("https://x.test/").retry(1, when="status >= 500")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        http.Retry(1, when=503)  # type: ignore[arg-type]


def test_send_sync_retries(server: Server) -> None:
    t = tag()
    assert failing(server, 2, 503, t).retry(2, backoff=0).send_sync().status_code == 200
    assert server.state.hits[t] == 3
