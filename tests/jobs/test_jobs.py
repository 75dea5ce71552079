"""Jobs on the ``sync`` and ``deferred`` connections, dispatch checks, the queue seam."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import afterward
from afterward import (
    ConfigError,
    DispatchError,
    InvalidCallbackError,
    Job,
    JobTimeout,
    NoScopeError,
    job,
)
from afterward.jobs import JobPayload, move_pending_to_queue, register_connection
from afterward.jobs import unregister_connection as unregister
from tests.jobs.sample import (
    Blocked,
    DefersInside,
    Flaky,
    OwnTimeout,
    Patient,
    SlowAsync,
    events,
    record,
    released,
)
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex


def _handles(key: str) -> list[tuple[Any, ...]]:
    return [e for e in events[key] if e[0] == "handle"]


def test_sync_retries_with_backoff_then_succeeds(key: str) -> None:
    Flaky(key=key, failures=2).dispatch(connection="sync")
    handles = _handles(key)
    assert len(handles) == 3
    first_gap, second_gap = handles[1][1] - handles[0][1], handles[2][1] - handles[1][1]
    assert 0.19 <= first_gap < 1.2
    assert 0.39 <= second_gap < 1.4
    assert not [e for e in events[key] if e[0] == "failed"]


def test_failed_runs_once_after_the_last_try_and_sync_reraises(key: str) -> None:
    with pytest.raises(RuntimeError, match="attempt 3 fails"):
        Flaky(key=key, failures=99).dispatch(connection="sync")
    kinds = [e[0] for e in events[key]]
    assert kinds == ["handle", "handle", "handle", "failed"]


def test_deferred_runs_after_the_scope_with_retries_and_correlation_id(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="afterward.jobs")
    with afterward.scope("cid-deferred"):
        Flaky(key=key, failures=2).dispatch(connection="deferred")
        assert events[key] == []
    wait_for(lambda: len(_handles(key)) == 3, timeout=10)
    handles = _handles(key)
    assert {h[2] for h in handles} == {"cid-deferred"}
    assert handles[1][1] - handles[0][1] >= 0.19
    assert handles[2][1] - handles[1][1] >= 0.39
    attempts = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert {getattr(r, "correlation_id", None) for r in attempts} == {"cid-deferred"}
    assert any("attempt 2/3 failed" in r.getMessage() for r in attempts)
    wait_for(lambda: any("attempt 3/3 succeeded" in r.getMessage() for r in caplog.records))


def test_deferred_failed_hook_runs_once(key: str) -> None:
    with afterward.scope():
        Flaky(key=key, failures=99).dispatch(connection="deferred")
    wait_for(lambda: any(e[0] == "failed" for e in events[key]))
    assert [e[0] for e in events[key]] == ["handle", "handle", "handle", "failed"]
    assert afterward.stats()["jobs.failed"] == 1


def test_deferred_needs_a_scope(key: str) -> None:
    with pytest.raises(NoScopeError):
        Flaky(key=key).dispatch(connection="deferred")


def test_delay_postpones_the_first_attempt(key: str) -> None:
    started = time.monotonic()
    with afterward.scope():
        Flaky(key=key).dispatch(connection="deferred", delay=0.3)
    assert _handles(key) == []
    wait_for(lambda: _handles(key))
    assert _handles(key)[0][1] - started >= 0.29


def test_default_connection_is_configurable(key: str) -> None:
    assert afterward.configure().default_connection == "deferred"
    afterward.configure(default_connection="sync")
    try:
        Flaky(key=key).dispatch()
        assert len(_handles(key)) == 1
    finally:
        afterward.configure(default_connection="deferred")
    with pytest.raises(ConfigError):
        afterward.configure(default_connection="")


def test_timeout_cancels_an_async_attempt(key: str) -> None:
    with pytest.raises(JobTimeout, match=r"timed out after 0\.2 s"):
        SlowAsync(key=key).dispatch(connection="sync")
    assert events[key] == [("cancelled",)]
    assert isinstance(JobTimeout("x"), TimeoutError)


def test_a_jobs_own_timeout_error_is_not_a_job_timeout(key: str) -> None:
    with pytest.raises(TimeoutError, match="payment API") as caught:
        OwnTimeout(key=key).dispatch(connection="sync")
    assert not isinstance(caught.value, JobTimeout)
    assert events[key] == [("failed", "TimeoutError", "the payment API timed out")]


def test_callbacks_deferred_inside_a_job_run_after_it_returns(key: str) -> None:
    DefersInside(key=key).dispatch(connection="sync")
    assert events[key] == [("handle returns",), ("deferred",)]


def test_decorated_function_dispatches_and_still_calls(key: str) -> None:
    with afterward.scope("cid-fn"):
        payload = record.dispatch(key, 7, label="y", connection="deferred")
    assert payload.path == "tests.jobs.sample:record"
    assert (payload.args, payload.kwargs, payload.tries) == ([key, 7], {"label": "y"}, 2)
    assert events[key] == [("record", 7, "y", "cid-fn")]


def test_non_json_argument_fails_at_dispatch_naming_it(key: str) -> None:
    with pytest.raises(DispatchError, match=r"argument 'failures' \(object\)"):
        Flaky(key=key, failures=object()).dispatch(connection="sync")  # type: ignore[arg-type]
    with pytest.raises(DispatchError, match=r"argument 'label' \(set\)"):
        record.dispatch(key, 1, label={1}, connection="sync")
    assert events[key] == []
    assert "jobs.dispatched" not in afterward.stats()


def test_job_not_importable_by_path_fails_at_dispatch() -> None:
    class Local(Job):
        def handle(self) -> None: ...

    with pytest.raises(DispatchError, match="inside a function body"):
        Local().dispatch(connection="sync")
    with pytest.raises(DispatchError, match="lambda"):
        job(lambda: None).dispatch(connection="sync")


def test_bad_options_fail_at_definition() -> None:
    with pytest.raises(ConfigError, match="tries"):

        class NoTries(Job):
            tries = 0

    with pytest.raises(ConfigError, match="backoff"):
        job(backoff=(1, -1))(print)
    with pytest.raises(ConfigError, match="timeout"):
        job(timeout=0)(print)


def test_unknown_connection_and_unconfigured_queue(key: str) -> None:
    with pytest.raises(DispatchError, match="register_connection\\('queue'"):
        Flaky(key=key).dispatch(connection="queue")
    with pytest.raises(DispatchError, match="unknown job connection 'nope'"):
        Flaky(key=key).dispatch(connection="nope")
    with pytest.raises(DispatchError, match="delay"):
        Flaky(key=key).dispatch(connection="sync", delay=-1)
    with pytest.raises(DispatchError, match="delay"):
        Flaky(key=key).dispatch(connection="sync", delay=float("inf"))
    assert _handles(key) == []


def test_job_function_arguments_must_fit_its_signature(key: str) -> None:
    with pytest.raises(DispatchError, match="do not fit its signature"):
        record.dispatch(key, connection="sync")  # value is missing
    with pytest.raises(DispatchError, match="do not fit its signature"):
        record.dispatch(key, 1, colour="red", connection="sync")
    assert events[key] == []
    with pytest.raises(InvalidCallbackError, match="@job needs a function"):
        job(tries=2)(42)  # type: ignore[call-overload]


class ListQueue:
    def __init__(self) -> None:
        self.payloads: list[JobPayload] = []

    def dispatch(self, payload: JobPayload) -> None:
        self.payloads.append(JobPayload.from_json(payload.to_json()))


def test_a_registered_queue_gets_checked_payloads(key: str) -> None:
    queue = ListQueue()
    register_connection("queue", queue)
    try:
        with afterward.correlate("cid-q"):
            Flaky(key=key, failures=1).dispatch(connection="queue", delay=10)
    finally:
        unregister("queue")
    (payload,) = queue.payloads
    assert payload.path == "tests.jobs.sample:Flaky"
    assert payload.kwargs == {"key": key, "failures": 1}
    assert (payload.correlation_id, payload.tries, payload.backoff) == ("cid-q", 3, [0.2, 0.4])
    assert 9 < payload.delay <= 10


async def test_run_payload_runs_one_attempt_for_a_worker(key: str) -> None:
    queue = ListQueue()
    register_connection("queue", queue)
    try:
        with afterward.correlate("cid-w"):
            DefersInside(key=key).dispatch(connection="queue")
    finally:
        unregister("queue")
    await afterward.jobs.run_payload(queue.payloads[0])
    assert events[key] == [("handle returns",), ("deferred",)]


def test_waiting_deferred_jobs_move_to_the_queue_on_shutdown(key: str) -> None:
    queue = ListQueue()
    with afterward.scope("cid-move"):
        Patient(key=key, failures=5).dispatch(connection="deferred")
    assert len(_handles(key)) == 1
    register_connection("queue", queue)
    try:
        assert move_pending_to_queue() == 1
    finally:
        unregister("queue")
    (payload,) = queue.payloads
    assert (payload.path, payload.attempt, payload.correlation_id) == (
        "tests.jobs.sample:Patient",
        2,
        "cid-move",
    )
    assert 50 < payload.delay <= 60


def test_jobs_still_running_when_the_grace_period_ends_move_to_the_queue(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = ListQueue()
    released.clear()

    def request() -> None:
        with afterward.scope("cid-lost"):
            Blocked(key=key).dispatch(connection="deferred")

    thread = threading.Thread(target=request)
    register_connection("queue", queue)
    thread.start()
    try:
        wait_for(lambda: afterward.stats().get("defer.registered"))
        assert afterward.drain_sync(timeout=0.2) is True  # rescued, so nothing was lost
        assert afterward.stats()["defer.rescued"] == 1
    finally:
        unregister("queue")
        released.set()
        thread.join(10)
    (payload,) = queue.payloads
    assert (payload.path, payload.attempt, payload.correlation_id) == (
        "tests.jobs.sample:Blocked",
        1,
        "cid-lost",
    )
    assert any("moved to the queue" in r.getMessage() for r in caplog.records)


def test_without_a_queue_a_waiting_job_is_logged_as_lost(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with afterward.scope("cid-no-queue"):
        Patient(key=key, failures=5).dispatch(connection="deferred")
    assert move_pending_to_queue() == 0
    assert any("was lost at shutdown" in r.getMessage() for r in caplog.records)


def test_process_exit_hands_waiting_deferred_jobs_to_the_queue(tmp_path: Path) -> None:
    out = tmp_path / "queued.json"
    script = f"""
import afterward
from afterward.jobs import register_connection
from tests.jobs.sample import Patient

class FileQueue:
    def dispatch(self, payload):
        open({str(out)!r}, "w").write(payload.to_json())

register_connection("queue", FileQueue())
with afterward.scope("cid-exit"):
    Patient(key="k", failures=5).dispatch(connection="deferred")
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=30)
    payload = JobPayload.from_json(out.read_text())
    assert (payload.path, payload.attempt, payload.correlation_id) == (
        "tests.jobs.sample:Patient",
        2,
        "cid-exit",
    )
