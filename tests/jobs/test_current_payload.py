"""``afterward.jobs.current_payload()``: the running attempt's payload, on every connection."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator

import pytest

import afterward
from afterward import Job, job
from afterward.events import EventBus, subscribe_worker
from afterward.jobs import JobPayload, current_payload, unregister_connection
from tests.support import wait_for

#: key -> (payload id, attempt) seen by each attempt, then ("failed", id, attempt)
seen: defaultdict[str, list[tuple[str | None, ...]]] = defaultdict(list)


def _note(key: str, *extra: str) -> None:
    payload = current_payload()
    assert isinstance(payload, JobPayload)
    seen[key].append((*extra, payload.id, str(payload.attempt)))


class FailsOnce(Job):
    """Fails its first attempt; notes the payload of each attempt (and of ``failed()``)."""

    tries = 2
    backoff = 0

    def __init__(self, key: str, always: bool = False) -> None:
        self.key = key
        self.always = always

    def handle(self) -> None:  # a plain def: runs on a thread, the payload goes with it
        _note(self.key)
        if self.always or len(seen[self.key]) == 1:
            raise RuntimeError("not this time")

    def failed(self, error: BaseException) -> None:
        _note(self.key, "failed")


@job(tries=1)
async def note_async(key: str) -> None:
    _note(key)
    afterward.defer(_note, key, "deferred")  # deferred work of the job sees it too


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex


def _check(key: str, dispatched: JobPayload) -> None:
    assert seen[key] == [(dispatched.id, "1"), (dispatched.id, "2")]


def test_none_outside_a_job() -> None:
    assert current_payload() is None


def test_sync_connection(key: str) -> None:
    dispatched = FailsOnce(key=key).dispatch(connection="sync")
    _check(key, dispatched)
    assert current_payload() is None


def test_failed_hook_and_deferred_work_see_it(key: str) -> None:
    with pytest.raises(RuntimeError):
        FailsOnce(key=key, always=True).dispatch(connection="sync")
    (first, second, failed) = seen[key]
    assert failed == ("failed", first[0], "2") and second == (first[0], "2")
    other = uuid.uuid4().hex
    dispatched = note_async.dispatch(other, connection="sync")
    assert seen[other] == [(dispatched.id, "1"), ("deferred", dispatched.id, "1")]


def test_deferred_connection(key: str) -> None:
    with afterward.scope("cid-current-payload"):
        dispatched = FailsOnce(key=key).dispatch(connection="deferred")
    wait_for(lambda: len(seen[key]) == 2)  # the retry runs on a timer, in a new scope
    _check(key, dispatched)


@pytest.fixture
def queue_bus() -> Iterator[EventBus]:
    bus = EventBus("memory://")
    bus.use_for_jobs("payloads")
    subscribe_worker(bus, "payloads")
    try:
        yield bus
    finally:
        unregister_connection("queue")


def test_queue_connection(key: str, queue_bus: EventBus) -> None:
    dispatched = FailsOnce(key=key).dispatch(connection="queue")
    queue_bus.drain_sync()
    _check(key, dispatched)
