"""The ``afterward`` command line, through click's CliRunner and a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import click
import pytest
from click.testing import CliRunner, Result

from afterward import correlate
from afterward.cli import main
from afterward.cli._worker import startup_line
from afterward.events import EventBus
from afterward.jobs import unregister_connection
from tests.cli import shop_app

AFTERWARD = str(Path(sys.executable).with_name("afterward"))


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def _dead_letters(url: str, *orders: str) -> list[str]:
    os.environ["SHOP_BROKEN"] = "1"
    try:
        bus = shop_app.make_bus(url)
        with correlate("cli-test-cid"):
            for order in orders:
                bus.publish_sync("order.completed", {"order_id": order}, key=order)
        bus.drain_sync()
        return [d.id for d in bus.dead_letters()]
    finally:
        del os.environ["SHOP_BROKEN"]


def test_every_command_has_help_with_an_example() -> None:
    commands = _commands(main)
    for expected in (
        ("worker",),
        ("consume",),
        ("demo",),
        ("dashboard",),
        ("events", "tail"),
        ("events", "publish"),
        ("events", "replay"),
        ("events", "lag"),
        ("dlq", "list"),
        ("dlq", "show"),
        ("dlq", "retry"),
        ("dlq", "discard"),
        ("failed", "list"),
        ("failed", "retry"),
        ("failed", "discard"),
        ("queue", "stats"),
        ("schemas", "list"),
        ("schemas", "show"),
        ("prune",),
    ):
        assert expected in commands
    for command in commands:
        result = invoke(*command, "--help")
        assert result.exit_code == 0, command
        assert "Example" in result.output, command
        leaf = not isinstance(main.commands[command[0]], click.Group) or len(command) > 1
        if leaf and command != ("consume",):  # consume APP:BUS: the app's bus has its URL
            assert "--bus URL" in result.output, command


def test_publish_tail_and_lag(bus_url: str) -> None:
    published = invoke(
        "events",
        "publish",
        "order.completed",
        '{"order_id": "ORD-1"}',
        "--key",
        "ORD-1",
        "--header",
        "source=cli",
        "--json",
    )
    assert published.exit_code == 0, published.output
    event = json.loads(published.output)
    assert event["topic"] == "order.completed" and event["key"] == "ORD-1"
    people = invoke("events", "publish", "order.completed", "-", input='{"order_id": "ORD-2"}')
    assert people.output.startswith("published order.completed ")

    tail = invoke("events", "tail", "order.completed", "--from-beginning", "-n", "2", "--json")
    lines = [json.loads(line) for line in tail.output.splitlines()]
    assert [e["data"]["order_id"] for e in lines] == ["ORD-1", "ORD-2"]
    assert lines[0]["id"] == event["id"] and lines[0]["headers"] == {"source": "cli"}
    human = invoke("events", "tail", "order.completed", "--from-beginning", "-n", "1")
    assert f"order.completed {event['id']} key=ORD-1" in human.output
    assert '{"order_id": "ORD-1"}' in human.output

    _dead_letters(bus_url)  # registers the notification group, which reads both
    lag = invoke("events", "lag", "--json")
    assert json.loads(lag.output) == {"notification": {"order.completed": 0}}
    table = invoke("events", "lag", "--threshold", "5")
    assert table.exit_code == 0 and "notification" in table.output


def test_replay_rewinds_a_group(bus_url: str) -> None:
    _dead_letters(bus_url, "ORD-1", "ORD-2", "ORD-3")
    result = invoke(
        "events",
        "replay",
        "order.completed",
        "--group",
        "notification",
        "--from-offset",
        "0",
        "--json",
    )
    assert json.loads(result.output)["backlog"] == 3
    over = invoke("events", "lag", "--threshold", "3")
    assert over.exit_code == 1 and "OVER" in over.output
    since = invoke(
        "events", "replay", "order.completed", "-g", "notification", "--since", "2999-01-01T00:00"
    )
    assert "0 event(s) to read again" in since.output


def test_replay_waits_for_the_consumers_with_a_progress_bar(bus_url: str) -> None:
    _dead_letters(bus_url, "ORD-1", "ORD-2", "ORD-3")
    consumer = subprocess.Popen(
        [AFTERWARD, "consume", "tests.cli.shop_app:bus", "--group", "notification"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        replay = subprocess.run(
            [
                AFTERWARD,
                "events",
                "replay",
                "order.completed",
                "-g",
                "notification",
                "--from-offset",
                "0",
                "--wait",
                "--timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    finally:
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=30) == 0
    assert replay.returncode == 0, replay.stderr
    assert "rewound notification on order.completed: 3 event(s)" in replay.stdout
    assert "notification catching up on order.completed" in replay.stderr  # the bar
    assert "3/3" in replay.stderr
    assert json.loads(invoke("events", "lag", "--json").output)["notification"] == {
        "order.completed": 0
    }


def test_dead_letters_list_show_retry_discard(bus_url: str) -> None:
    first, second, third = _dead_letters(bus_url, "ORD-1", "ORD-2", "ORD-3")
    listed = json.loads(invoke("dlq", "list", "--json").output)
    assert [d["id"] for d in listed] == [first, second, third]
    assert listed[0]["event"]["correlation_id"] == "cli-test-cid"
    assert "ConnectionError" in invoke("dlq", "list", "--group", "notification").output

    shown = invoke("dlq", "show", first)
    assert "mail provider unavailable for ORD-1" in shown.output
    assert '"order_id": "ORD-1"' in shown.output and "Traceback" in shown.output

    retried = invoke("dlq", "retry", "--app", "tests.cli.shop_app:bus", first, "--json")
    assert json.loads(retried.output) == {"action": "retry", "ids": [first], "failed_again": []}
    assert "ORD-1" in shop_app.handled
    gone = invoke("dlq", "discard", "--all", "--group", "notification")
    assert gone.output.strip().endswith("discarded 2 dead letter(s)")
    assert invoke("dlq", "list").output.strip() == "Dead letters: none"


def test_dlq_retry_with_only_a_bus_url_hands_the_event_back(bus_url: str) -> None:
    first, second = _dead_letters(bus_url, "ORD-5", "ORD-6")
    retried = invoke("dlq", "retry", first)  # AFTERWARD_BUS, no --app
    assert retried.exit_code == 0, retried.output
    assert "retried 1 dead letter(s): handed back to their topics" in retried.output
    assert [d["id"] for d in json.loads(invoke("dlq", "list", "--json").output)] == [second]
    assert json.loads(invoke("events", "lag", "--json").output) == {
        "notification": {"order.completed": 1}
    }
    app = shop_app.make_bus(bus_url)  # the group's consumer runs it
    app.drain_sync()
    assert "ORD-5" in shop_app.handled and "ORD-6" not in shop_app.handled


def _failed_jobs(url: str, *orders: str) -> list[str]:
    from afterward.events import subscribe_worker
    from afterward.jobs import unregister_connection

    bus = EventBus(url)
    bus.use_for_jobs("receipts")
    try:
        subscribe_worker(bus, "receipts")
        with correlate("cli-job-cid"):
            for order in orders:
                shop_app.send_receipt.dispatch(order, connection="queue")
        bus.drain_sync()
    finally:
        unregister_connection("queue")  # the queue connection is process-wide
    return [job.id for job in bus.failed_jobs()]


def test_failed_jobs_list_retry_discard(bus_url: str) -> None:
    first, second = _failed_jobs(bus_url, "ORD-1", "ORD-2")
    listed = json.loads(invoke("failed", "list", "--json").output)
    assert [(j["id"], j["queue"], j["attempts"]) for j in listed] == [
        (first, "receipts", 2),
        (second, "receipts", 2),
    ]
    assert listed[0]["path"].endswith("send_receipt") and listed[0]["args"] == ["ORD-1"]
    assert "receipt for ORD-1 bounced" in listed[0]["traceback"]
    assert "cli-job-cid" in invoke("failed", "list", "--queue", "receipts").output
    assert invoke("dlq", "list").output.strip() == "Dead letters: none"  # jobs are apart

    retried = invoke("failed", "retry", first)
    assert retried.output.strip() == "retried 1 failed job(s)"
    assert [j.id for j in EventBus(bus_url).failed_jobs()] == [second]
    gone = invoke("failed", "discard", "--all", "--json")
    assert json.loads(gone.output) == {"action": "discard", "ids": [second]}
    assert invoke("failed", "list").output.strip() == "Failed jobs: none"
    missing = CliRunner().invoke(main, ["failed", "discard", "nope"])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "Error: no failed job with ID 'nope'"


def test_schemas_list_and_show(bus_url: str) -> None:
    assert invoke("schemas", "list").output.strip() == "Schemas: none registered"
    bus = EventBus(bus_url)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    bus.schema("t", schema)
    bus.schema("t", {**schema, "properties": {"n": {"type": "number"}}})
    (listed,) = json.loads(invoke("schemas", "list", "--json").output)
    assert (listed["topic"], listed["version"], listed["compatibility"]) == ("t", 2, "backward")
    first = json.loads(invoke("schemas", "show", "t", "--version", "1", "--json").output)
    assert first["schema"] == schema
    assert '"number"' in invoke("schemas", "show", "t").output
    missing = CliRunner().invoke(main, ["schemas", "show", "t", "--version", "9"])
    assert missing.exit_code == 1 and "has no version 9 (versions: 1, 2)" in missing.stderr


def test_prune_reports_what_it_removed_and_what_is_left(bus_url: str) -> None:
    bus = EventBus(bus_url)
    bus.publish_sync("t", {"n": 1})
    report = json.loads(invoke("prune", "--json").output)
    assert report["pruned"] == {"events": 0, "processed": 0, "versions": 0, "history": 0}
    assert report["storage"]["t"]["events"] == 1
    assert "pruned 0 event(s)" in invoke("prune").output


def test_queue_stats(bus_url: str) -> None:
    assert invoke("queue", "stats").output.strip() == "Queues: no jobs in any queue"
    bus = EventBus(bus_url)
    bus.use_for_jobs("receipts")
    try:
        shop_app.send_receipt.dispatch("ORD-1", connection="queue")
        shop_app.send_receipt.dispatch("ORD-2", connection="queue", delay=3600)
    finally:
        unregister_connection("queue")
    stats = json.loads(invoke("queue", "stats", "--json").output)
    assert stats == {
        "receipts": {"ready": 1, "delayed": 1, "running": 0, "failed": 0, "workers": {}}
    }
    table = invoke("queue", "stats", "--queue", "receipts").output
    assert "receipts" in table and "Delayed" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dlq", "list", "--bus", "bogus://x"), "cannot use bus URL 'bogus://x'"),
        (("events", "publish", "t", "{oops"), "DATA is not valid JSON"),
        (("events", "lag", "--bus", "redis://127.0.0.1:1/0"), "unreachable"),
        (("events", "publish", "t", "@/nonexistent.json"), "cannot read DATA"),
        (("events", "publish", "bad topic!", "{}"), "topic"),
        (("dlq", "show", "no-such-id"), "no dead letter with ID 'no-such-id'"),
        (("dlq", "discard", "no-such-id"), "no dead letter with ID 'no-such-id'"),
        (("dlq", "discard"), "give dead letter IDs or --all"),
        (("dlq", "retry", "--app", "tests.cli.shop_app:bus", "no-such-id"), "no dead letter"),
        (("dlq", "retry", "--app", "no_such_module:bus", "x"), "cannot import 'no_such_module'"),
        (("events", "replay", "t", "-g", "g", "--since", "yesterday"), "not an ISO 8601"),
        (("events", "replay", "t", "-g", "g"), "give one of --since and --from-offset"),
        (("events", "publish", "t", "{}", "-H", "novalue"), "is not NAME=VALUE"),
        (("dashboard", "--no-auth", "--host", "0.0.0.0"), "only allowed on a loopback host"),
        (("dashboard", "--bus", "redis://127.0.0.1:1/0", "--port", "0"), "unreachable"),
        (("demo", "--bus", "redis://127.0.0.1:1/0", "--port", "0"), "unreachable"),
        (("demo", "--bus", "bogus://x", "--port", "0"), "cannot use bus URL 'bogus://x'"),
        (("demo", "--bus", "memory://", "--db", "x.db", "--port", "0"), "not both"),
    ],
)
def test_bad_input_gives_one_line_and_a_non_zero_exit(
    bus_url: str, args: tuple[str, ...], message: str
) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]


def test_a_busy_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args in (["dashboard", "--bus", "memory://"], ["demo", "--load", "1"]):
            result = CliRunner().invoke(main, [*args, "--port", port])
            assert result.exit_code == 1
            assert (
                result.stderr
                == f"Error: cannot serve on 127.0.0.1:{port}: the port is in use (try --port)\n"
            )


def test_an_unreachable_kafka_broker_is_one_line_from_the_installed_script(
    tmp_path: Path,
) -> None:
    store = quote(f"sqlite:///{tmp_path / 'state.db'}", safe="")
    run = subprocess.run(
        [AFTERWARD, "events", "lag", "--bus", f"kafka://127.0.0.1:1?store={store}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Kafka bus"), run.stderr
    assert "unreachable" in lines[0]


def test_the_installed_script(tmp_path: Path) -> None:
    env = {**os.environ, "AFTERWARD_BUS": f"sqlite:///{tmp_path / 'script.db'}"}
    run = subprocess.run(
        [AFTERWARD, "events", "publish", "order.completed", '{"order_id": 9}', "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["data"] == {"order_id": 9}
    bad = subprocess.run(
        [AFTERWARD, "dlq", "show", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == "Error: no dead letter with ID 'nope'"


def test_consume_names_a_kafka_bus_s_state_store() -> None:
    store = "sqlite:///var/lib/shop/kafka-state.db"
    bus = EventBus(f"kafka://127.0.0.1:9092?store={quote(store, safe='')}")
    line = startup_line(bus, ("billing",))
    assert line.startswith("consuming on kafka://127.0.0.1:9092") and "groups billing" in line
    assert f"state store {store} (every consumer of a group must use this one)" in line
    assert "state store" not in startup_line(EventBus("memory://"), ())
