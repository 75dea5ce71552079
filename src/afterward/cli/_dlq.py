"""``afterward dlq list|show|retry|discard``: dead letters, per consumer group."""

from __future__ import annotations

import sys
from typing import Any

import click

from afterward.cli._bus import open_bus
from afterward.cli._output import (
    CliError,
    bus_option,
    emit_json,
    json_option,
    progress,
    run,
    table,
)
from afterward.cli._records import dead_letter_record, short
from afterward.events import read_dead_letters

__all__ = ["dlq"]


@click.group()
def dlq() -> None:
    """Dead letters: events a group's handler failed on after all its retries.

    \b
    Example:
        afterward dlq list --group notification
    """


@dlq.command("list")
@click.option("--group", "-g", default=None, help="Only this consumer group.")
@click.option("--topic", "-t", default=None, help="Only events of this topic.")
@bus_option
@json_option
def list_(group: str | None, topic: str | None, bus_url: str | None, as_json: bool) -> None:
    """List dead letters, newest last.

    \b
    Example:
        afterward dlq list --group notification --bus sqlite:///shop.db
    """

    async def main() -> list[Any]:
        async with open_bus(bus_url) as bus:
            return await read_dead_letters(bus, group, topic)

    letters = run(main())
    if as_json:
        emit_json([dead_letter_record(d) for d in letters])
        return
    table(
        "Dead letters",
        ["ID", "Group", "Topic", "Attempts", "Failed at", "Correlation ID", "Error"],
        [
            (
                d.id,
                d.group,
                d.event.topic,
                d.attempts,
                f"{d.failed_at:%Y-%m-%d %H:%M:%S}",
                d.event.correlation_id,
                short(d.error, 60),
            )
            for d in letters
        ],
        empty="none",
    )


@dlq.command()
@click.argument("dead_letter_id")
@bus_option
@json_option
def show(dead_letter_id: str, bus_url: str | None, as_json: bool) -> None:
    """Show one dead letter: its event, payload, error and traceback.

    \b
    Example:
        afterward dlq show 3f2a9c...
    """

    async def main() -> Any:
        async with open_bus(bus_url) as bus:
            for letter in await read_dead_letters(bus):
                if str(letter.id) == dead_letter_id:
                    return letter
        raise CliError(f"no dead letter with ID {dead_letter_id!r}")

    record = dead_letter_record(run(main()))
    if as_json:
        emit_json(record)
        return
    event = record["event"]
    table(
        f"Dead letter {record['id']}",
        ["Field", "Value"],
        [
            ("group", record["group"]),
            ("topic", event["topic"]),
            ("event ID", event["id"]),
            ("key", event["key"]),
            ("correlation ID", event["correlation_id"]),
            ("attempts", record["attempts"]),
            ("failed at", record["failed_at"]),
            ("error", record["error"]),
        ],
    )
    import json

    click.echo("Payload:")
    click.echo(json.dumps(event["data"], indent=2, ensure_ascii=False))
    click.echo("Traceback:")
    click.echo(record["traceback"] or "(none)")


def _act(
    verb: str,
    ids: tuple[str, ...],
    all_: bool,
    group: str | None,
    bus_url: str | None,
    as_json: bool,
    app: str | None = None,
) -> None:
    if bool(ids) == all_:
        raise CliError("give dead letter IDs or --all (not both)")

    async def main() -> dict[str, list[str]]:
        async with open_bus(bus_url, app) as bus:
            targets = (
                [str(d.id) for d in await read_dead_letters(bus, group)] if all_ else list(ids)
            )
            outcome: dict[str, list[str]] = {"done": [], "failed_again": []}
            with progress(f"{verb} dead letters", len(targets), enabled=len(targets) > 1) as step:
                for target in targets:
                    if verb == "retry":
                        ok = await bus.retry_dead_letter(target)
                        outcome["done" if ok is not False else "failed_again"].append(target)
                    else:
                        await bus.discard_dead_letter(target)
                        outcome["done"].append(target)
                    step()
            return outcome

    outcome = run(main())
    if as_json:
        emit_json({"action": verb, "ids": outcome["done"], "failed_again": outcome["failed_again"]})
    elif verb == "retry" and app is None:
        click.echo(
            f"retried {len(outcome['done'])} dead letter(s): handed back to their topics "
            "for the groups' consumers"
        )
    elif verb == "retry":
        click.echo(
            f"retried {len(outcome['done']) + len(outcome['failed_again'])} dead letter(s): "
            f"{len(outcome['done'])} handled, {len(outcome['failed_again'])} failed again"
        )
    else:
        click.echo(f"discarded {len(outcome['done'])} dead letter(s)")
    if outcome["failed_again"]:
        sys.exit(1)


@dlq.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter (of --group, if given).")
@click.option("--group", "-g", default=None, help="With --all: only this consumer group.")
@click.option(
    "--app",
    "app_spec",
    default=None,
    metavar="MODULE:BUS",
    help="Your app's bus object, whose subscribed handlers run the retries here "
    "(instead of --bus).",
)
@bus_option
@json_option
def retry(
    ids: tuple[str, ...],
    all_: bool,
    group: str | None,
    app_spec: str | None,
    bus_url: str | None,
    as_json: bool,
) -> None:
    """Send dead letters back through their group's handler.

    With --app (your app's bus object, with its subscribers; its URL is the bus's),
    the handler runs now, in this process: a letter whose retry succeeds leaves the
    list; one that fails again stays with the new error, and the command exits with
    status 1. With only --bus, each event is handed back to its topic (same ID) and
    leaves the list; the group's consumers (your app, ``afterward consume``) run it.

    \b
    Examples:
        afterward dlq retry --app shop.events:bus 3f2a9c... 8b1d07...
        afterward dlq retry --app shop.events:bus --all --group notification
        afterward dlq retry --bus sqlite:///shop.db --all   # for the running consumers
    """
    _act("retry", ids, all_, group, bus_url, as_json, app_spec)


@dlq.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter (of --group, if given).")
@click.option("--group", "-g", default=None, help="With --all: only this consumer group.")
@bus_option
@json_option
def discard(
    ids: tuple[str, ...], all_: bool, group: str | None, bus_url: str | None, as_json: bool
) -> None:
    """Delete dead letters for good.

    \b
    Examples:
        afterward dlq discard 3f2a9c...
        afterward dlq discard --all --group analytics
    """
    _act("discard", ids, all_, group, bus_url, as_json)
