"""Every error afterward raises, in one place.

The tree::

    AfterwardError
    ├── ConfigError (ValueError)            bad settings or arguments to configure()
    ├── NoScopeError (RuntimeError)         defer()/forget() with no open defer scope
    ├── BlockingCallError (RuntimeError)    a blocking API on afterward's own loop thread
    ├── InvalidCallbackError (TypeError)    defer() of a non-callable or a bad name
    ├── TaskError                           a concurrency task raised (.index, .error)
    ├── TaskTimeout (TimeoutError)          concurrency.run exceeded its timeout
    ├── StrayRequestError                   a faked HTTP client saw an unmatched request
    ├── InvalidRequestError (TypeError)     http.pool()/batch() given something not a request
    ├── JobError
    │   ├── DispatchError (ValueError)      a job cannot be dispatched (arguments, path)
    │   ├── JobTimeout (TimeoutError)       a job attempt exceeded its timeout
    │   └── RequestFailed                   a durable HTTP request got a failing answer
    ├── BackendError                        a backend failed (.backend)
    │   └── BackendUnavailable              the backend cannot be reached
    ├── PublishError (ValueError)           bad event: topic, data, size (.topic)
    │   └── SchemaError                     data does not match the topic's schema
    └── NotFoundError (LookupError)         an unknown dead letter / failed job ID

Every afterward error derives from :class:`AfterwardError`; where a builtin fits it is
mixed in, so ``except ValueError`` keeps working for code that does not know us.
"""

from __future__ import annotations

__all__ = [
    "AfterwardError",
    "BackendError",
    "BackendUnavailable",
    "BlockingCallError",
    "ConfigError",
    "DispatchError",
    "InvalidCallbackError",
    "InvalidRequestError",
    "JobError",
    "JobTimeout",
    "NoScopeError",
    "NotFoundError",
    "PublishError",
    "RequestFailed",
    "SchemaError",
    "StrayRequestError",
    "TaskError",
    "TaskTimeout",
]


class AfterwardError(Exception):
    """Base class of every error raised by afterward."""


class ConfigError(AfterwardError, ValueError):
    """A setting or an argument has a value afterward cannot use."""


class NoScopeError(AfterwardError, RuntimeError):
    """Deferred work was registered with no defer scope open."""


class BlockingCallError(AfterwardError, RuntimeError):
    """A blocking API (a sync twin, ``with scope():``, ``run_now()``) was called on
    afterward's own background event-loop thread, where waiting would deadlock: use the
    async API there."""


class InvalidCallbackError(AfterwardError, TypeError):
    """``defer`` was given something it cannot run later."""


class TaskError(AfterwardError):
    """A task given to ``concurrency.run`` raised.

    Attributes:
        index: position of the failing task in the list given to ``run``.
        error: the exception the task raised (also the ``__cause__``).
    """

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(f"task {index} raised {type(error).__name__}: {error}")
        self.index = index
        self.error = error


class TaskTimeout(AfterwardError, TimeoutError):
    """``concurrency.run`` did not finish within its timeout."""


class StrayRequestError(AfterwardError):
    """A request matched no fake while stray requests are prevented."""


class InvalidRequestError(AfterwardError, TypeError):
    """``http.pool``/``http.batch`` got something other than requests in a dict or list,
    or a request got an argument httpx does not take; raised before anything is sent."""


class JobError(AfterwardError):
    """Base class of job errors.

    A job error can steer the job's retries on every connection (``sync``,
    ``deferred``, ``queue``); by default it is retried like any other exception.

    Attributes:
        retryable: ``False`` makes the attempt that raised it the job's last, whatever
            tries are left.
        retry_after: seconds the next attempt must wait instead of the job's backoff
            (``None``: the backoff).
    """

    retryable: bool = True
    retry_after: float | None = None


class DispatchError(JobError, ValueError):
    """A job cannot be dispatched (arguments not JSON, class not importable...)."""


class JobTimeout(JobError, TimeoutError):
    """One attempt of a job ran longer than the job's ``timeout``."""


class RequestFailed(JobError):
    """A durable request (``request.dispatch()``) got a failing answer on one attempt.

    Retried (the job's ``tries`` and ``backoff``) after a transport error or timeout,
    a 429 (waiting what its ``Retry-After`` asks, at most 60 s) or a 5xx; any other
    status >= 400 fails the job at once. The message, stored in failed jobs, names the
    request, the status and the start of the body.

    Attributes:
        method: the request's method.
        url: the request's URL.
        status: the response's status code, or ``None`` after a transport error.
        excerpt: the start of the response body (or the transport error's text).
    """

    def __init__(
        self,
        method: str,
        url: str,
        status: int | None,
        excerpt: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        outcome = "failed" if status is None else f"answered {status}"
        super().__init__(f"{method} {url} {outcome}: {excerpt}")
        self.method, self.url, self.status, self.excerpt = method, url, status, excerpt
        self.retryable, self.retry_after = retryable, retry_after


class BackendError(AfterwardError):
    """A backend (SQLite, Kafka, Redis...) failed.

    Attributes:
        backend: the URL scheme of the backend, e.g. ``"kafka"``.
    """

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend


class BackendUnavailable(BackendError):
    """The backend's server cannot be reached."""


class PublishError(AfterwardError, ValueError):
    """An event cannot be published; nothing was written.

    Attributes:
        topic: the topic the event was for.
    """

    def __init__(self, message: str, *, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic


class SchemaError(PublishError):
    """The event data does not match the schema registered for its topic."""


class NotFoundError(AfterwardError, LookupError):
    """No dead letter, failed job or event has that ID."""
