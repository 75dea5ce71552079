"""``afterward prune``: run a retention pass now, and show what the bus holds."""

from __future__ import annotations

from dataclasses import asdict

import click

from afterward.cli._bus import open_bus
from afterward.cli._output import bus_option, emit_json, json_option, run, table
from afterward.events import Pruned, TopicStorage

__all__ = ["prune"]


@click.command()
@bus_option
@json_option
def prune(bus_url: str | None, as_json: bool) -> None:
    """Delete what is past the retention now (events, processed IDs, versions, history).

    Uses the bus's default retention (7 days) unless AFTERWARD_BUS's app configures
    others; `afterward consume`/`bus.run()` prune in the background anyway.

    \b
    Example:
        afterward prune --bus sqlite:///shop.db --json
    """

    async def main() -> tuple[Pruned, dict[str, TopicStorage]]:
        async with open_bus(bus_url) as bus:
            return await bus.prune(), await bus.storage()

    pruned, storage = run(main())
    if as_json:
        emit_json(
            {
                "pruned": asdict(pruned),
                "storage": {
                    topic: {
                        "events": s.events,
                        "bytes": s.bytes,
                        "oldest": s.oldest.isoformat() if s.oldest else None,
                    }
                    for topic, s in storage.items()
                },
            }
        )
        return
    click.echo(
        f"pruned {pruned.events} event(s), {pruned.processed} processed ID(s), "
        f"{pruned.versions} key version(s), {pruned.history} history entries"
    )
    table(
        "Storage",
        ["Topic", "Events", "Bytes", "Oldest"],
        [
            (t, s.events, s.bytes, s.oldest.strftime("%Y-%m-%d %H:%M:%S") if s.oldest else "")
            for t, s in storage.items()
        ],
        empty="no events stored",
    )
