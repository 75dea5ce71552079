"""One lazy request: :class:`PendingRequest` and the functions that make them."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Unpack

import httpx

from afterward._exceptions import ConfigError, InvalidRequestError
from afterward._loop import run_sync
from afterward.http._build import CORRELATION_HEADER, OPTIONS, RequestOptions, build_request
from afterward.http._durable import dispatch_request
from afterward.http._retry import DEFAULT_BACKOFF, Retry, When
from afterward.http._send import deliver

if TYPE_CHECKING:
    from afterward.jobs import JobPayload

__all__ = [
    "CORRELATION_HEADER",
    "METHODS",
    "PendingRequest",
    "RequestOptions",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
]

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class PendingRequest:
    """A request described but not sent yet: await it, or give it to ``pool``/``batch``.

    Nothing touches the network until it is awaited (or sent by a pool or batch); it
    can be sent more than once. Made by :func:`get`, :func:`post`... and :func:`request`.
    Treat it as immutable: :meth:`retry` returns a new request.

    Example:
        >>> req = http.post("https://pay.test/charge", json={"amount": 5})
        >>> resp = await req                 # an httpx.Response
        >>> resp = req.send_sync()           # the same, from sync code

    Attributes:
        method: the HTTP method, upper case.
        url: the URL as given (joined with ``configure(base_url=...)`` when sent).
        options: the httpx keyword arguments (``params``, ``headers``, ``json``...).
        retry_policy: the :class:`~afterward.http.Retry` set by :meth:`retry`, or
            ``None`` to follow the pool's, the batch's or the configured one.
    """

    __slots__ = ("method", "options", "retry_policy", "url")

    def __init__(
        self, method: str, url: str | httpx.URL, **options: Unpack[RequestOptions]
    ) -> None:
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise ConfigError(
                f"unknown HTTP method {method!r}; use one of {', '.join(sorted(METHODS))}"
            )
        if not isinstance(url, str | httpx.URL):
            raise InvalidRequestError(f"a request URL must be a str or httpx.URL, got {url!r}")
        unknown = set(options) - OPTIONS
        if unknown:
            raise InvalidRequestError(
                f"unknown request argument(s) {', '.join(sorted(unknown))}; httpx takes "
                f"{', '.join(sorted(OPTIONS))}"
            )
        self.method = method.upper()
        self.url = url
        self.options = options
        self.retry_policy: Retry | None = None

    def retry(
        self,
        times: int,
        backoff: float | Sequence[float] = DEFAULT_BACKOFF,
        when: When | None = None,
    ) -> PendingRequest:
        """Return a copy of this request that is retried; this one is left as it was.

        Retried by default on a transport error or timeout, 429 and 5xx, waiting a
        random time up to the backoff step (full jitter) or what ``Retry-After`` asks,
        at most 60 s. POST and PATCH are retried only with ``when=`` or an
        ``Idempotency-Key`` header. This policy beats a pool's, a batch's and
        ``http.configure(retry=...)``; ``.retry(0)`` turns retries off for the request.

        Example:
            >>> await http.get(url).retry(3)
            >>> await http.post(hook, json=event, headers={"Idempotency-Key": event_id}).retry(
            ...     5, backoff=(1, 5, 30))

        Args:
            times: extra attempts after the first; an int >= 0.
            backoff: seconds, one number or a sequence whose last value repeats.
            when: ``when(response_or_error) -> bool`` decides instead of the default
                conditions (see :class:`~afterward.http.Retry`).

        Raises:
            ConfigError: ``times`` is not an int >= 0, or ``backoff`` not seconds >= 0.
            InvalidCallbackError: ``when`` is not callable.
        """
        policy = Retry(times, backoff, when)
        copy = PendingRequest.__new__(PendingRequest)
        copy.method, copy.url, copy.options = self.method, self.url, self.options.copy()
        copy.retry_policy = policy
        return copy

    async def send(self) -> httpx.Response:
        """Send the request (and its retries) and return the final response, body read.

        A status >= 400 is returned, not raised (httpx's behaviour).

        Raises:
            httpx.TransportError: connection refused or dropped, timeouts... (the
                last attempt's, when retried).
            StrayRequestError: under a fake preventing stray requests, nothing matched.
        """
        return await deliver(self)

    def dispatch(
        self,
        *,
        tries: int = 5,
        backoff: float | Sequence[float] = (1, 10, 60),
        queue: str = "queue",
    ) -> JobPayload:
        """Send the request from a durable queue job: it survives this process dying.

        The request is stored as it would be sent now (``base_url``, default headers and
        timeout applied; a ``content=`` or ``data=`` body as exact bytes) and enqueued,
        through the outbox inside an open database transaction (so it exists only once
        that commits). A worker (``afterward worker``) sends it with this process's
        correlation ID and an ``Idempotency-Key`` (the job ID) unless it has one, and
        retries it with ``tries`` and ``backoff`` whatever its method, on a transport
        error, a timeout, 429 (honouring ``Retry-After``, at most 60 s) and 5xx; another
        status >= 400 fails it at once. Given up, it lands in failed jobs with the last
        status and the start of the body (:class:`~afterward.RequestFailed`).

        Example:
            >>> http.post(hook, json={"order_id": 7}).dispatch(tries=5, backoff=(1, 10, 60))

        Args:
            tries: attempts in total; an int >= 1.
            backoff: seconds before attempt 2, 3, ...; the last value repeats.
            queue: the job connection that takes it (the durable ``"queue"``; any
                registered name).

        Returns:
            The job's payload (``payload.id`` is the job ID and default idempotency key).

        Raises:
            DispatchError: ``tries`` is not an int >= 1, a negative ``backoff``, a
                ``json=`` body that is not JSON-serializable, a streamed body, an
                argument that cannot be stored (``auth=``, ``cookies=``, ``files=``...),
                a relative URL with no ``base_url``, a request with its own
                :meth:`retry`, or an unknown ``queue``. Nothing was enqueued.
        """
        return dispatch_request(
            self.method, self.url, self.options, self.retry_policy, tries, backoff, queue
        )

    def build(self, client: httpx.AsyncClient) -> tuple[httpx.Request, dict[str, Any]]:
        """The ``httpx.Request`` to send with ``client`` now, and ``client.send``'s options.

        Built afresh for every attempt: a request body is read once by the transport.
        """
        return build_request(client, self.method, self.url, self.options)

    def send_sync(self) -> httpx.Response:
        """Blocking twin of :meth:`send`, for Flask, Django and scripts.

        Runs on afterward's one background event loop (shared connection pool);
        works from any thread, including one running its own event loop.
        """
        return run_sync(self.send())

    def __await__(self) -> Generator[Any, None, httpx.Response]:
        return self.send().__await__()

    def __repr__(self) -> str:
        return f"<PendingRequest {self.method} {self.url}>"


def request(method: str, url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a request with any method; ``options`` are httpx's per-request arguments.

    Raises:
        ConfigError: the method is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.
        InvalidRequestError: an argument httpx does not take.
    """
    return PendingRequest(method, url, **options)


def get(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a GET request (``await`` it to send it). See :func:`request`."""
    return PendingRequest("GET", url, **options)


def post(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a POST request (``json=``, ``data=``, ``content=``, ``files=``...)."""
    return PendingRequest("POST", url, **options)


def put(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a PUT request. See :func:`request`."""
    return PendingRequest("PUT", url, **options)


def patch(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a PATCH request. See :func:`request`."""
    return PendingRequest("PATCH", url, **options)


def delete(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a DELETE request. See :func:`request`."""
    return PendingRequest("DELETE", url, **options)


def head(url: str | httpx.URL, **options: Unpack[RequestOptions]) -> PendingRequest:
    """Describe a HEAD request. See :func:`request`."""
    return PendingRequest("HEAD", url, **options)


def options(url: str | httpx.URL, **kwargs: Unpack[RequestOptions]) -> PendingRequest:
    """Describe an OPTIONS request. See :func:`request`."""
    return PendingRequest("OPTIONS", url, **kwargs)
