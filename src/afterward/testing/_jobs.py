"""The ``afterward_jobs`` fixture: record job dispatches instead of running them.

:mod:`afterward.jobs` is imported only when the fixture is used, so loading the plugin
stays light.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from afterward._loop import run_sync

if TYPE_CHECKING:
    from afterward.jobs import JobPayload

__all__ = ["DispatchedJob", "JobRecorder", "afterward_jobs"]


@dataclass
class DispatchedJob:
    """One recorded dispatch.

    Attributes:
        target: the :class:`~afterward.Job` subclass or ``@job`` function.
        payload: what would have been sent (JSON arguments, options, correlation ID).
        connection: the connection it was dispatched to.
    """

    target: Any
    payload: JobPayload
    connection: str

    @property
    def arguments(self) -> dict[str, Any]:
        """The job's arguments by parameter name, defaults included."""
        from afterward.jobs import JobFunction

        fn = self.target.fn if isinstance(self.target, JobFunction) else self.target
        bound = inspect.signature(fn).bind(*self.payload.args, **self.payload.kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


class JobRecorder:
    """What the ``afterward_jobs`` fixture yields.

    Dispatches are still checked (JSON arguments, importable job, delay) but not sent.

    Attributes:
        dispatched: every recorded dispatch, in order.
    """

    def __init__(self) -> None:
        self.dispatched: list[DispatchedJob] = []
        self._ran = 0

    def _record(self, target: Any, payload: JobPayload, connection: str) -> None:
        self.dispatched.append(DispatchedJob(target, payload, connection))

    def matching(self, target: Any, **match: Any) -> list[DispatchedJob]:
        """The recorded dispatches of ``target`` whose arguments include ``match``."""
        return [
            d
            for d in self.dispatched
            if d.target is target
            and all(d.arguments.get(k, _MISSING) == v for k, v in match.items())
        ]

    def assert_dispatched(self, target: Any, **match: Any) -> DispatchedJob:
        """Assert ``target`` was dispatched with arguments including ``match``.

        Example:
            >>> afterward_jobs.assert_dispatched(RecordDelivery, order_id=1)

        Returns:
            The first matching dispatch.
        """
        found = self.matching(target, **match)
        if not found:
            seen = [f"{d.payload.path}{d.arguments}" for d in self.dispatched] or "nothing"
            raise AssertionError(f"{_name(target)} was not dispatched with {match}; saw {seen}")
        return found[0]

    def assert_not_dispatched(self, target: Any, **match: Any) -> None:
        """Assert no dispatch of ``target`` has arguments including ``match``."""
        found = self.matching(target, **match)
        if found:
            raise AssertionError(
                f"{_name(target)} was dispatched {len(found)} time(s) with {match}: "
                f"{[d.arguments for d in found]}"
            )

    def run_all(self) -> int:
        """Run every recorded job not run yet, now, with its retries and ``failed()``.

        Jobs dispatched by those jobs are recorded and run too.

        Returns:
            How many jobs ran.

        Raises:
            Exception: the last error of the first job that failed every try.
        """
        from afterward.jobs import JobPayload
        from afterward.jobs._runner import run_attempts

        ran = 0
        while self._ran < len(self.dispatched):
            recorded = self.dispatched[self._ran]
            self._ran += 1
            ran += 1
            fresh = JobPayload.from_json(recorded.payload.to_json())
            error = run_sync(run_attempts(fresh, _no_wait))
            if error is not None:
                raise error
        return ran


_MISSING = object()


async def _no_wait(seconds: float) -> None:
    return None


def _name(target: Any) -> str:
    return str(getattr(target, "__qualname__", target))


@pytest.fixture
def afterward_jobs() -> Iterator[JobRecorder]:
    """Record every job dispatch made during the test instead of running it.

    Example:
        >>> def test_checkout_records_delivery(afterward_jobs, client):
        ...     client.post("/checkout", json={"order_id": 1})
        ...     afterward_jobs.assert_dispatched(RecordDelivery, order_id=1)
        ...     afterward_jobs.run_all()          # run them, if the test wants to
    """
    from afterward.jobs._connections import set_recorder

    recorder = JobRecorder()
    previous = set_recorder(recorder._record)
    try:
        yield recorder
    finally:
        set_recorder(previous)
