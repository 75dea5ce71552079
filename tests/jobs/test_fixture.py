"""The ``afterward_jobs`` fixture."""

from __future__ import annotations

import pytest

from afterward import DispatchError, Job
from afterward.testing._jobs import JobRecorder
from tests.jobs.sample import Flaky, events, record


def test_records_instead_of_running(afterward_jobs: JobRecorder) -> None:
    Flaky(key="fixture-a", failures=0).dispatch(connection="background")
    record.dispatch("fixture-b", 3, connection="queue")  # no queue needed while recording
    assert events["fixture-a"] == [] and events["fixture-b"] == []
    found = afterward_jobs.assert_dispatched(Flaky, key="fixture-a")
    assert found.connection == "background"
    assert found.arguments == {"key": "fixture-a", "failures": 0}
    afterward_jobs.assert_dispatched(record, value=3, label="x")
    afterward_jobs.assert_not_dispatched(Flaky, key="other")
    afterward_jobs.assert_not_dispatched(record, value=4)
    with pytest.raises(AssertionError, match="Flaky was not dispatched"):
        afterward_jobs.assert_dispatched(Flaky, key="other")
    with pytest.raises(AssertionError, match="dispatched 1 time"):
        afterward_jobs.assert_not_dispatched(record)


def test_still_checks_dispatches(afterward_jobs: JobRecorder) -> None:
    with pytest.raises(DispatchError):
        record.dispatch("fixture-c", object())
    with pytest.raises(DispatchError, match="unknown job connection 'nope'"):
        record.dispatch("fixture-c", 1, connection="nope")
    assert afterward_jobs.dispatched == []


def test_run_all_runs_recorded_jobs_with_retries(afterward_jobs: JobRecorder) -> None:
    Flaky(key="fixture-d", failures=1).dispatch()
    assert afterward_jobs.run_all() == 1
    assert [e[0] for e in events["fixture-d"]] == ["handle", "handle"]
    assert afterward_jobs.run_all() == 0


def test_run_all_raises_the_error_of_a_job_that_failed_every_try(
    afterward_jobs: JobRecorder,
) -> None:
    class Broken(Job):
        def handle(self) -> None:
            raise RuntimeError("nope")

    Flaky(key="fixture-e", failures=9).dispatch()
    with pytest.raises(RuntimeError, match="attempt 3 fails"):
        afterward_jobs.run_all()
    assert events["fixture-e"][-1][0] == "failed"
