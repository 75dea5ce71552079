"""Sending one request to its final outcome: attempts, retries and the waits between.

Every request goes through :func:`deliver`, alone or in a pool or batch, so retries,
their logs and counters, and the per-host cap behave the same everywhere. An attempt
takes its host's slot, then its pool's; the wait before a retry holds neither. A pool
or batch passes its :class:`Lane`: before waiting (for a retry, or for a host at its
cap) the request tells the lane, which lets another worker go on with the next
request, so neither kind of wait stalls requests behind it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from afterward import _telemetry
from afterward._context import correlation_id
from afterward._stats import incr
from afterward.http import _client
from afterward.http._fake import active_fakes
from afterward.http._hosts import host_gate
from afterward.http._retry import Retry, is_retryable

__all__ = ["Lane", "Sendable", "deliver", "logger"]

logger = logging.getLogger("afterward.http")
Outcome = httpx.Response | Exception


class Lane(Protocol):
    """What a pool or batch run gives each request it sends."""

    #: Held during each attempt: the run's ``concurrency`` (``None``: no cap needed).
    slot: asyncio.Semaphore | None

    def pause(self) -> None:
        """The request is about to wait (not in flight): let another one be sent."""

    def resume(self) -> None:
        """The wait is over."""


class Sendable(Protocol):
    """What :func:`deliver` needs of a request (a :class:`~afterward.http.PendingRequest`)."""

    @property
    def retry_policy(self) -> Retry | None:
        """The request's own retry policy, if any."""
        ...

    def build(self, client: httpx.AsyncClient) -> tuple[httpx.Request, dict[str, Any]]:
        """The ``httpx.Request`` to send with ``client``, and ``client.send``'s options."""
        ...


async def deliver(
    request: Sendable, inherited: Retry | None = None, lane: Lane | None = None
) -> httpx.Response:
    """Send ``request`` with its retry policy and return the final response.

    Args:
        request: what to send.
        inherited: the pool's or batch's policy, used when the request has none;
            ``None`` falls back to ``http.configure(retry=...)``.
        lane: the pool or batch run sending it, if any.

    Raises:
        Exception: what the final attempt raised (``httpx.TransportError``...).
    """
    policy = request.retry_policy
    if policy is None:
        policy = inherited if inherited is not None else _client.settings.retry
    client = await _client.current_client(faking=bool(active_fakes()))
    built, options = request.build(client)
    if not policy.allows(built.method, built.headers):
        return _final(await _attempt(client, built, options, lane, catch=False))
    retries = 0
    while True:
        outcome = await _attempt(client, built, options, lane, catch=True)
        if not await _wants_retry(policy, outcome, built):
            return _final(outcome)
        if retries == policy.times:
            incr("http.retries_exhausted")
            _log(
                logging.WARNING,
                f"gave up on {_where(built)} after {retries + 1} attempts: {_what(outcome)}",
            )
            return _final(outcome)
        retries += 1
        wait = policy.wait(retries, outcome if isinstance(outcome, httpx.Response) else None)
        incr("http.retries")
        _log(
            logging.WARNING,
            f"retrying {_where(built)} after {_what(outcome)}: "
            f"retry {retries} of {policy.times} in {wait:.2f} s",
        )
        with _paused(lane):
            await asyncio.sleep(wait)
        client = await _client.current_client(faking=bool(active_fakes()))
        built, options = request.build(client)


async def _attempt(
    client: httpx.AsyncClient,
    built: httpx.Request,
    options: dict[str, Any],
    lane: Lane | None,
    *,
    catch: bool,
) -> Outcome:
    tracing = _telemetry.tracing
    if tracing is None:
        outcome = await _send_once(client, built, options, lane)
    else:
        with tracing.http_client(built) as span:
            outcome = await _send_once(client, built, options, lane)
            if isinstance(outcome, httpx.Response):
                span.set_attribute("http.response.status_code", outcome.status_code)
            else:
                span.fail(outcome)
    incr("http.requests", labels=(built.url.host, _outcome_label(outcome)))
    if not catch and isinstance(outcome, Exception):
        raise outcome
    return outcome


def _outcome_label(outcome: Outcome) -> str:
    """``afterward_http_requests_total``'s outcome: ok, http_4xx, http_5xx, timeout, error."""
    if isinstance(outcome, httpx.Response):
        status = outcome.status_code
        return "ok" if status < 400 else "http_4xx" if status < 500 else "http_5xx"
    return "timeout" if isinstance(outcome, httpx.TimeoutException) else "error"


async def _send_once(
    client: httpx.AsyncClient, built: httpx.Request, options: dict[str, Any], lane: Lane | None
) -> Outcome:
    """One attempt: the host's slot, then the lane's; the response or the error."""
    try:
        gate = host_gate(built.url, _client.settings.max_per_host)
        if gate is not None:
            if gate.locked():
                with _paused(lane):
                    await gate.acquire()
            else:
                await gate.acquire()
        try:
            slot = None if lane is None else lane.slot
            if slot is None:
                return await client.send(built, **options)
            async with slot:
                return await client.send(built, **options)
        finally:
            if gate is not None:
                gate.release()
    except Exception as exc:
        return exc


@contextmanager
def _paused(lane: Lane | None) -> Iterator[None]:
    if lane is None:
        yield
        return
    lane.pause()
    try:
        yield
    finally:
        lane.resume()


def _final(outcome: Outcome) -> httpx.Response:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def _wants_retry(policy: Retry, outcome: Outcome, built: httpx.Request) -> bool:
    """The policy's ``when``, isolated like a hook, else the default conditions."""
    if policy.when is None:
        return is_retryable(outcome)
    try:
        verdict = policy.when(outcome)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        incr("hooks.failed")
        _log(logging.ERROR, f"retry when= raised on {_where(built)}: no retry", error=exc)
        return False
    return bool(verdict)


def _log(level: int, text: str, error: BaseException | None = None) -> None:
    """Log ``text`` with the correlation ID, in the message and on the record."""
    cid = correlation_id()
    logger.log(
        level, "%s (correlation_id=%s)", text, cid, exc_info=error, extra={"correlation_id": cid}
    )


def _where(built: httpx.Request) -> str:
    url = built.url  # the query is left out: it often carries tokens
    return f"{built.method} {url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def _what(outcome: Outcome) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    return f"{type(outcome).__name__}: {outcome}"
