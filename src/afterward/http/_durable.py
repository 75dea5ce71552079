"""Durable requests: ``request.dispatch()`` stores a request as a queue job.

The request is frozen when it is dispatched: its URL joined with the configured
``base_url`` and ``params``, the configured default headers under its own, a JSON body
as JSON and any other body as bytes (base64 on the wire, so they round-trip exactly),
its timeout. A worker process that never ran the app's ``http.configure()`` sends the
same request. :class:`DurableRequest` is the job; the worker retries it with the
policy given to ``dispatch`` (see :class:`~afterward.RequestFailed`).
"""

from __future__ import annotations

import base64
import json as jsonlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from afterward._exceptions import ConfigError, DispatchError, RequestFailed
from afterward.http import _client
from afterward.http._build import RequestOptions, build_request
from afterward.http._retry import NO_RETRY, Retry, is_retryable, retry_after
from afterward.http._send import deliver
from afterward.jobs import Job, JobOptions, JobPayload, current_payload, dispatch_with

__all__ = ["EXCERPT_CHARS", "DurableRequest", "dispatch_request"]

#: How much of a failing response's body its :class:`~afterward.RequestFailed` keeps.
EXCERPT_CHARS = 500
_STORABLE = frozenset(
    {"params", "headers", "json", "content", "data", "timeout", "follow_redirects"}
)
_BODIES = ("json", "content", "data")


class DurableRequest(Job):
    """The job a dispatched request runs as: one attempt sends it once.

    Built from what :func:`dispatch_request` stored; not meant to be made by hand.
    A status below 400 is a success. A transport error, a timeout, 429 and 5xx raise a
    retryable :class:`~afterward.RequestFailed` (a ``Retry-After`` sets the wait before
    the next try); another 4xx raises one that is not retried.

    The request carries the dispatching request's ``X-Correlation-ID`` (the job runs
    with it bound) and an ``Idempotency-Key``, the job ID, unless it has its own.
    """

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request

    async def handle(self) -> None:
        """Send the request once; raise :class:`~afterward.RequestFailed` if it failed."""
        stored = self.request
        method, url = stored["method"], stored["url"]
        headers = httpx.Headers([(name, value) for name, value in stored["headers"]])
        payload = current_payload()
        if payload is not None and "idempotency-key" not in headers:
            headers["Idempotency-Key"] = payload.id
        options: RequestOptions = {"headers": headers}
        if "body" in stored:
            options["content"] = base64.b64decode(stored["body"])
        elif "json" in stored:
            options["json"] = stored["json"]
        if "timeouts" in stored:
            options["timeout"] = httpx.Timeout(**stored["timeouts"])
        if "follow_redirects" in stored:
            options["follow_redirects"] = stored["follow_redirects"]
        try:
            response = await deliver(_Attempt(method, url, options))
        except httpx.TransportError as exc:
            text = f"{type(exc).__name__}: {exc}"
            raise RequestFailed(method, url, None, text, retryable=True) from exc
        if response.status_code >= 400:
            raise RequestFailed(
                method,
                url,
                response.status_code,
                _excerpt(response),
                retryable=is_retryable(response),
                retry_after=retry_after(response),
            )


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One send of a durable request (its job retries, never :func:`deliver`)."""

    method: str
    url: str
    options: RequestOptions
    retry_policy: Retry = NO_RETRY

    def build(self, client: httpx.AsyncClient) -> tuple[httpx.Request, dict[str, Any]]:
        return build_request(client, self.method, self.url, self.options)


def _excerpt(response: httpx.Response) -> str:
    text = response.content[: EXCERPT_CHARS * 4].decode("utf-8", "replace")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


def dispatch_request(
    method: str,
    url: str | httpx.URL,
    options: RequestOptions,
    policy: Retry | None,
    tries: int,
    backoff: float | Sequence[float],
    queue: str,
) -> JobPayload:
    """Freeze a request and dispatch it as a :class:`DurableRequest` to ``queue``.

    Raises:
        DispatchError: see ``PendingRequest.dispatch``; nothing was enqueued.
    """
    if policy is not None:
        raise DispatchError(
            "a dispatched request is retried by its job (tries=, backoff=): drop .retry()"
        )
    try:
        job_options = JobOptions.checked("request.dispatch()", tries, backoff, None)
    except ConfigError as exc:
        raise DispatchError(str(exc)) from None
    job = DurableRequest(_frozen(method, url, options))
    return dispatch_with(job, job_options, connection=queue)


def _frozen(method: str, url: str | httpx.URL, options: RequestOptions) -> dict[str, Any]:
    """The request a :class:`DurableRequest` stores, as JSON values."""
    unknown = set(options) - _STORABLE
    if unknown:
        raise DispatchError(
            f"a dispatched request cannot store {', '.join(sorted(unknown))}: it takes "
            f"{', '.join(sorted(_STORABLE))} (put credentials in headers)"
        )
    if sum(name in options for name in _BODIES) > 1:
        raise DispatchError("give a dispatched request one body: json=, content= or data=")
    full = httpx.URL(_client.merge_url(url))
    if full.is_relative_url:
        raise DispatchError(
            f"a dispatched request needs an absolute URL (or http.configure(base_url=...)), "
            f"got {str(url)!r}"
        )
    if options.get("params") is not None:
        full = full.copy_merge_params(options["params"])
    headers = httpx.Headers(_client.settings.headers)
    headers.update(httpx.Headers(options.get("headers")))
    frozen: dict[str, Any] = {"method": method, "url": str(full)}
    if "json" in options:
        frozen["json"] = _checked_json(options["json"])
    body = _body(method, full, options, headers)
    if body is not None:
        frozen["body"] = base64.b64encode(body).decode("ascii")
    frozen["headers"] = [[name, value] for name, value in headers.multi_items()]
    timeout = options["timeout"] if "timeout" in options else _client.settings.timeout
    if "timeout" in options or timeout is not None:
        frozen["timeouts"] = _timeout(timeout)
    if "follow_redirects" in options:
        frozen["follow_redirects"] = bool(options["follow_redirects"])
    return frozen


def _checked_json(value: Any) -> Any:
    try:
        return jsonlib.loads(jsonlib.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DispatchError(
            f"a dispatched request's json= body must be JSON-serializable "
            f"({type(value).__name__} given): {exc}"
        ) from exc


def _body(
    method: str, url: httpx.URL, options: RequestOptions, headers: httpx.Headers
) -> bytes | None:
    """The bytes of a ``content=`` or ``data=`` body (a form's content type added)."""
    if options.get("content") is not None:
        content = options["content"]
        if isinstance(content, str):
            return content.encode()
        if isinstance(content, bytes | bytearray | memoryview):
            return bytes(content)
        raise DispatchError(
            f"a dispatched request's content= must be bytes or str (a stream cannot be "
            f"stored), got {type(content).__name__}"
        )
    data = options.get("data")
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise DispatchError(
            f"a dispatched request's data= must be a mapping (a form; raw bytes go in "
            f"content=), got {type(data).__name__}"
        )
    form = httpx.Request(method, url, data=data)
    headers.setdefault("Content-Type", form.headers["Content-Type"])
    return form.read()


def _timeout(value: object) -> dict[str, float | None]:
    if value is None or isinstance(value, httpx.Timeout):
        return httpx.Timeout(value).as_dict()
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return httpx.Timeout(value).as_dict()
    raise DispatchError(f"timeout must be seconds > 0, an httpx.Timeout or None, got {value!r}")
