"""``afterward schemas list|show``: the schema registry of a bus."""

from __future__ import annotations

import json

import click

from afterward.cli._bus import open_bus
from afterward.cli._output import CliError, bus_option, emit_json, json_option, run, table
from afterward.events import StoredSchema

__all__ = ["schemas"]


def _record(schema: StoredSchema) -> dict[str, object]:
    return {
        "topic": schema.topic,
        "version": schema.version,
        "compatibility": schema.compatibility,
        "registered_at": schema.registered_at.isoformat(),
        "schema": json.loads(schema.schema),
    }


async def _read(bus_url: str | None, topic: str | None) -> list[StoredSchema]:
    async with open_bus(bus_url) as bus:
        return await bus.schemas_async(topic)


@click.group()
def schemas() -> None:
    """The schemas registered per topic, shared by every service on the bus.

    \b
    Example:
        afterward schemas list
    """


@schemas.command("list")
@bus_option
@json_option
def list_(bus_url: str | None, as_json: bool) -> None:
    """Every topic with a schema: its latest version and mode.

    \b
    Example:
        afterward schemas list --json
    """
    latest: dict[str, StoredSchema] = {}
    for schema in run(_read(bus_url, None)):
        latest[schema.topic] = schema  # versions come in order: the last one wins
    if as_json:
        emit_json([_record(s) for s in latest.values()])
        return
    table(
        "Schemas",
        ["Topic", "Latest version", "Compatibility", "Registered at"],
        [
            (s.topic, s.version, s.compatibility, s.registered_at.strftime("%Y-%m-%d %H:%M:%S"))
            for s in latest.values()
        ],
        empty="none registered",
    )


@schemas.command("show")
@click.argument("topic")
@click.option("--version", "-v", "number", type=int, default=None, help="This version.")
@bus_option
@json_option
def show(topic: str, number: int | None, bus_url: str | None, as_json: bool) -> None:
    """One topic's schema (the latest version, or ``--version N``).

    \b
    Example:
        afterward schemas show order.completed --version 2
    """
    versions = run(_read(bus_url, topic))
    if not versions:
        raise CliError(f"no schema registered for {topic!r}")
    chosen = (
        versions[-1] if number is None else next((s for s in versions if s.version == number), None)
    )
    if chosen is None:
        known = ", ".join(str(s.version) for s in versions)
        raise CliError(f"{topic!r} has no version {number} (versions: {known})")
    if as_json:
        emit_json(_record(chosen))
        return
    click.echo(
        f"{chosen.topic} version {chosen.version} of {len(versions)} "
        f"({chosen.compatibility}, registered {chosen.registered_at:%Y-%m-%d %H:%M:%S})"
    )
    click.echo(json.dumps(json.loads(chosen.schema), indent=2, sort_keys=True))
