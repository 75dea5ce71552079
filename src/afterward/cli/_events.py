"""``afterward events tail|publish|replay|lag``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from afterward.cli._bus import open_bus
from afterward.cli._output import (
    CliError,
    bus_option,
    emit_json,
    json_option,
    one_line,
    progress,
    run,
    table,
)
from afterward.cli._records import event_record, short
from afterward.events import maybe_await

__all__ = ["events"]


@click.group()
def events() -> None:
    """Publish, watch, replay and measure events.

    \b
    Example:
        afterward events publish order.completed '{"order_id": 7}'
    """


def _parse_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise CliError(f"cannot read {what} from {text[1:]!r}: {one_line(exc)}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON: {one_line(exc)}") from exc


def _parse_headers(pairs: tuple[str, ...]) -> dict[str, str] | None:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"header {pair!r} is not NAME=VALUE")
        headers[name] = value
    return headers or None


@events.command()
@click.argument("topic")
@click.argument("data")
@click.option(
    "--key", "-k", default=None, help="Partition key (events with one key stay in order)."
)
@click.option("--version", "version", type=int, default=None, help="Version, for stale-skip.")
@click.option("--id", "event_id", default=None, help="Your own event ID (idempotent publish).")
@click.option("--header", "-H", "headers", multiple=True, metavar="NAME=VALUE")
@bus_option
@json_option
def publish(
    topic: str,
    data: str,
    key: str | None,
    version: int | None,
    event_id: str | None,
    headers: tuple[str, ...],
    bus_url: str | None,
    as_json: bool,
) -> None:
    """Publish one event. DATA is JSON, ``-`` for stdin or ``@file.json``.

    \b
    Examples:
        afterward events publish order.completed '{"order_id": 7, "total": 10}' --key order-7
        echo '{"order_id": 8}' | afterward events publish order.completed -
    """
    payload = _parse_json(data, "DATA")
    header_map = _parse_headers(headers)

    async def main() -> Any:
        async with open_bus(bus_url) as bus:
            return await bus.publish(
                topic, payload, key=key, version=version, id=event_id, headers=header_map
            )

    event = run(main())
    if as_json:
        emit_json(event_record(event))
    else:
        click.echo(f"published {topic} {getattr(event, 'id', event)}")


@events.command()
@click.option("--group", "-g", default=None, help="Only this consumer group.")
@click.option(
    "--threshold",
    type=click.IntRange(1),
    default=None,
    help="Flag lags at or above this and exit with status 1 if any (for monitoring).",
)
@bus_option
@json_option
def lag(group: str | None, threshold: int | None, bus_url: str | None, as_json: bool) -> None:
    """Show, per group and topic, how many events are published but not yet handled.

    \b
    Examples:
        afterward events lag
        afterward events lag --threshold 10000 --json   # exit status 1 when over
    """

    async def main() -> dict[str, dict[str, int]]:
        async with open_bus(bus_url) as bus:
            result: dict[str, dict[str, int]] = await bus.lag()
            return result

    lags = {g: topics for g, topics in run(main()).items() if group in (None, g)}
    rows = [
        (g, topic, count, threshold is not None and count >= threshold)
        for g, topics in sorted(lags.items())
        for topic, count in sorted(topics.items())
    ]
    if as_json:
        emit_json(lags)
    else:
        table(
            "Lag",
            ["Group", "Topic", "Lag", *(["Alert"] if threshold else [])],
            [
                (g, t, f"{n:,}", *(["OVER" if over else ""] if threshold else []))
                for g, t, n, over in rows
            ],
            empty="no consumer groups yet",
        )
    if any(over for *_, over in rows):
        sys.exit(1)


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CliError(f"--since {value!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@events.command()
@click.argument("topic")
@click.option("--group", "-g", required=True, help="The consumer group to rewind.")
@click.option("--since", default=None, help="First event at or after this ISO time (UTC if naive).")
@click.option("--from-offset", type=click.IntRange(0), default=None, help="Offset per partition.")
@click.option("--reprocess", is_flag=True, help="Run handlers again for already processed IDs.")
@click.option(
    "--wait",
    is_flag=True,
    help="Then show a progress bar until the group's consumers have caught up.",
)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="With --wait.")
@bus_option
@json_option
def replay(
    topic: str,
    group: str,
    since: str | None,
    from_offset: int | None,
    reprocess: bool,
    wait: bool,
    timeout: float,
    bus_url: str | None,
    as_json: bool,
) -> None:
    """Rewind GROUP on TOPIC so that its consumers read the events again.

    Give one of --since and --from-offset. Already processed event IDs are skipped
    unless --reprocess. The group's consumers (``afterward consume``, your app) do the
    work; --wait follows their progress.

    \b
    Examples:
        afterward events replay order.completed --group billing --from-offset 0
        afterward events replay order.completed -g billing --since 2026-11-23T09:00 --wait
    """
    when = _parse_since(since)
    if (when is None) == (from_offset is None):
        raise CliError("give one of --since and --from-offset")

    async def main() -> int:
        async with open_bus(bus_url) as bus:
            if when is not None:
                await bus.replay(topic, group=group, since=when, reprocess=reprocess)
            else:
                await bus.replay(topic, group=group, from_offset=from_offset, reprocess=reprocess)
            backlog = (await bus.lag()).get(group, {}).get(topic, 0)
            if wait and backlog:
                await _follow(bus, group, topic, backlog, timeout, not as_json)
            return int(backlog)

    backlog = run(main())
    if as_json:
        emit_json({"topic": topic, "group": group, "backlog": backlog})
    else:
        click.echo(f"rewound {group} on {topic}: {backlog:,} event(s) to read again")


async def _follow(bus: Any, group: str, topic: str, total: int, timeout: float, bar: bool) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    done = 0
    with progress(f"{group} catching up on {topic}", total, enabled=bar) as step:
        while done < total:
            left = (await bus.lag()).get(group, {}).get(topic, 0)
            for _ in range(max(0, min(total, total - left) - done)):
                step()
            done = max(done, total - left)
            if time.monotonic() > deadline:
                raise CliError(f"{group} still has {left:,} event(s) to read after {timeout} s")
            await asyncio.sleep(0.2)  # polling a remote number: there is nothing to await


@events.command()
@click.argument("topics", nargs=-1, required=True)
@click.option("--from-beginning", is_flag=True, help="Start with the oldest stored events.")
@click.option("--limit", "-n", type=click.IntRange(1), default=None, help="Stop after N events.")
@bus_option
@json_option
def tail(
    topics: tuple[str, ...],
    from_beginning: bool,
    limit: int | None,
    bus_url: str | None,
    as_json: bool,
) -> None:
    """Print events of TOPICS as they are published.

    Tailing reads the log; it joins no consumer group and moves no group's position.
    With --json, prints one JSON object per line.

    \b
    Examples:
        afterward events tail order.completed
        afterward events tail order.completed --from-beginning -n 20 --json | jq .data
    """

    async def main() -> None:
        seen = 0
        async with open_bus(bus_url) as bus:
            stream = bus.tail(*topics, from_beginning=from_beginning)
            async for event in stream:
                if as_json:
                    emit_json(event_record(event), lines=True)
                else:
                    click.echo(
                        f"{event.occurred_at:%H:%M:%S} {event.topic} {event.id} "
                        f"key={event.key} cid={event.correlation_id} "
                        f"{short(json.dumps(event.data, ensure_ascii=False), 100)}"
                    )
                seen += 1
                if limit is not None and seen >= limit:
                    break
            await maybe_await(getattr(stream, "aclose", lambda: None)())

    try:
        run(main())
    except KeyboardInterrupt:  # Ctrl-C is how one stops a tail
        pass
