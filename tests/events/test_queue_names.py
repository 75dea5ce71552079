"""The public names of the job queue's topics and groups, and ``subscribe_worker``."""

from __future__ import annotations

from pathlib import Path

import pytest

import afterward.events
from afterward import ConfigError
from afterward.events import (
    JOB_TOPIC_PREFIX,
    WORKER_GROUP_PREFIX,
    EventBus,
    is_worker_group,
    job_topic,
    subscribe_worker,
    worker_group,
)
from afterward.jobs import unregister_connection
from tests.cli.shop_app import send_receipt

SRC = Path(afterward.events.__file__).resolve().parents[1]


def test_prefixes_and_helpers() -> None:
    assert JOB_TOPIC_PREFIX == "afterward.jobs."
    assert WORKER_GROUP_PREFIX == "afterward.worker."
    assert job_topic("mail") == "afterward.jobs.mail"
    assert worker_group("mail") == "afterward.worker.mail"
    assert is_worker_group(worker_group("mail"))
    assert not is_worker_group("billing") and not is_worker_group(job_topic("mail"))


def test_subscribe_worker_runs_the_queue_in_its_group() -> None:
    bus = EventBus("memory://")
    bus.use_for_jobs("mail")
    try:
        assert subscribe_worker(bus, "mail") == worker_group("mail")
        with pytest.raises(ConfigError):
            subscribe_worker(bus, "mail")  # one worker per queue and bus
        with pytest.raises(ConfigError):
            subscribe_worker(bus, "")
        send_receipt.dispatch("ORD-1", connection="queue")
        bus.drain_sync()
    finally:
        unregister_connection("queue")
    (failed,) = bus.failed_jobs("mail")
    assert failed.queue == "mail" and failed.attempts == 2
    assert bus.dead_letters() == []  # failed jobs live in the work queue, not as dead letters


@pytest.mark.parametrize("part", ["cli", "dashboard"])
def test_no_hard_coded_queue_names_outside_the_bus(part: str) -> None:
    for path in (SRC / part).rglob("*.py"):
        text = path.read_text()
        for literal in ('"afterward.worker.', '"afterward.jobs.'):
            assert literal not in text, f"{path}: use afterward.events' names"
