"""The two ways to write a job: a :class:`Job` subclass or a ``@job`` function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, ParamSpec, Self, TypeVar, overload

from afterward._exceptions import DispatchError, InvalidCallbackError
from afterward.jobs._connections import send
from afterward.jobs._options import JobOptions
from afterward.jobs._serialize import JobPayload

__all__ = ["Job", "JobFunction", "JobOptions", "bind", "dispatch_with", "job"]

P = ParamSpec("P")
R = TypeVar("R")


class Job:
    """Base class of jobs: work with arguments, run now, after the response or elsewhere.

    The constructor's arguments are the job's arguments: they are captured when the
    job is built, must be JSON values, and the job is built again from them wherever
    it runs. Class attributes set the retry policy.

    Example:
        >>> class RecordDelivery(Job):
        ...     tries = 3
        ...     backoff = (1, 5, 30)
        ...     timeout = 30
        ...     def __init__(self, order_id: int) -> None:
        ...         self.order_id = order_id
        ...     async def handle(self) -> None:
        ...         await deliveries.record(self.order_id)
        >>> RecordDelivery(order_id=1).dispatch()

    Attributes:
        tries: attempts in total (default 1).
        backoff: seconds to wait before attempt 2, 3, ...; the last value repeats.
        timeout: seconds per attempt (``None``: no limit).
    """

    tries: ClassVar[int] = 1
    backoff: ClassVar[float | Sequence[float]] = ()
    timeout: ClassVar[float | None] = None
    _afterward_options: ClassVar[JobOptions] = JobOptions()
    _afterward_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._afterward_options = JobOptions.checked(
            cls.__qualname__, cls.tries, cls.backoff, cls.timeout
        )

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls)
        self._afterward_args = (args, kwargs)
        return self

    def handle(self) -> Awaitable[None] | None:
        """Do the work; a plain method or a coroutine. Raising counts as a failed try."""
        raise NotImplementedError(f"{type(self).__qualname__} must define handle()")

    def failed(self, error: BaseException) -> Awaitable[None] | None:
        """Called once after the last try failed, with its exception (default: nothing)."""
        return None

    def dispatch(
        self,
        *,
        connection: str | None = None,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int | None = None,
    ) -> JobPayload:
        """Send the job to a connection.

        Args:
            connection: ``"sync"``, ``"deferred"``, ``"background"``, ``"queue"`` or
                any registered name; default ``afterward.configure(default_connection=...)``
                (``"deferred"``).
            delay: seconds to wait before the first attempt.
            at: an aware datetime before which the first attempt must not start (in the
                past: as soon as possible). Give ``delay`` or ``at``, not both.
            priority: on the ``queue`` connection, among due jobs higher runs first
                (default 0); other connections run jobs in dispatch order.

        Returns:
            The payload sent (its ``id`` names this dispatch).

        Raises:
            DispatchError: an argument is not JSON, the class is not importable by
                its path, the connection is unknown or not configured, a negative
                ``delay``, a naive ``at``, both, or a ``priority`` that is not an int.
                Nothing was sent then.
            NoScopeError: ``"deferred"`` with no defer scope open.
        """
        options = type(self)._afterward_options
        return dispatch_with(
            self, options, connection=connection, delay=delay, at=at, priority=priority
        )


def dispatch_with(
    job: Job,
    options: JobOptions,
    *,
    connection: str | None = None,
    delay: float | None = None,
    at: datetime | None = None,
    priority: int | None = None,
) -> JobPayload:
    """:meth:`Job.dispatch` with ``options`` instead of the class's ``tries``,
    ``backoff`` and ``timeout``: for a policy chosen per dispatch (``request.dispatch()``).

    Raises:
        DispatchError: as for :meth:`Job.dispatch`.
    """
    args, kwargs = job._afterward_args
    cls = type(job)
    return send(cls, cls, args, kwargs, options, connection, delay, at, priority)


class JobFunction(Generic[P, R]):
    """A function made a job by :func:`job`; calling it still runs it directly."""

    def __init__(self, fn: Callable[P, R], options: JobOptions) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.options = options
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: checked when run
            self._signature = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def dispatch(
        self,
        *args: Any,
        connection: str | None = None,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> JobPayload:
        """Send a call of the function to a connection (see :meth:`Job.dispatch`).

        Raises:
            DispatchError: the arguments do not fit the function's signature, or as
                for :meth:`Job.dispatch`.
        """
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise DispatchError(
                    f"cannot dispatch {self.fn.__qualname__}: its arguments do not fit its "
                    f"signature {self._signature}: {exc}"
                ) from None
        return send(self, self.fn, args, kwargs, self.options, connection, delay, at, priority)

    def __repr__(self) -> str:
        return f"<job {self.fn.__module__}.{self.fn.__qualname__}>"


@overload
def job(fn: Callable[P, R], /) -> JobFunction[P, R]: ...
@overload
def job(
    *, tries: int = 1, backoff: float | Sequence[float] = (), timeout: float | None = None
) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...
def job(
    fn: Callable[P, R] | None = None,
    /,
    *,
    tries: int = 1,
    backoff: float | Sequence[float] = (),
    timeout: float | None = None,
) -> JobFunction[P, R] | Callable[[Callable[P, R]], JobFunction[P, R]]:
    """Make a top-level function (sync or async) a job with ``.dispatch(...)``.

    Example:
        >>> @job(tries=3, backoff=(1, 5))
        ... async def send_receipt(order_id: int) -> None: ...
        >>> send_receipt.dispatch(7, connection="deferred")

    Args:
        tries: attempts in total.
        backoff: seconds before attempt 2, 3, ...; the last value repeats.
        timeout: seconds per attempt.

    Raises:
        ConfigError: an option has a bad value.
        InvalidCallbackError: what is decorated is not callable.
    """

    def decorate(function: Callable[P, R]) -> JobFunction[P, R]:
        if not callable(function):
            raise InvalidCallbackError(f"@job needs a function, got {function!r}")
        where = getattr(function, "__qualname__", repr(function))
        return JobFunction(function, JobOptions.checked(where, tries, backoff, timeout))

    return decorate if fn is None else decorate(fn)


def bind(
    target: Any, args: list[Any], kwargs: dict[str, Any]
) -> tuple[Callable[[], object], Callable[[BaseException], object]]:
    """Build a resolved job: return its ``handle`` and ``failed`` callables.

    Raises:
        DispatchError: ``target`` is neither a :class:`Job` subclass nor a ``@job``
            function.
    """
    if isinstance(target, type) and issubclass(target, Job):
        instance = target(*args, **kwargs)
        return instance.handle, instance.failed
    if isinstance(target, JobFunction):
        return functools.partial(target.fn, *args, **kwargs), _no_failed_hook
    raise DispatchError(f"{target!r} is neither a Job subclass nor a @job function")


def _no_failed_hook(error: BaseException) -> None:
    return None
