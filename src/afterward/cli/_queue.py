"""``afterward queue stats``: jobs per state, per queue."""

from __future__ import annotations

import click

from afterward.cli._bus import open_bus
from afterward.cli._output import bus_option, emit_json, json_option, run, table
from afterward.events import QueueDepth

__all__ = ["queue"]


@click.group()
def queue() -> None:
    """The work queue behind ``dispatch(connection="queue")``.

    \b
    Example:
        afterward queue stats
    """


@queue.command("stats")
@click.option("--queue", "-q", "name", default=None, help="Only this queue.")
@bus_option
@json_option
def stats(name: str | None, bus_url: str | None, as_json: bool) -> None:
    """Ready, delayed, running (by worker) and failed jobs per queue.

    \b
    Example:
        afterward queue stats --json
    """

    async def main() -> dict[str, QueueDepth]:
        async with open_bus(bus_url) as bus:
            return await bus.queue_stats(name)

    depths = run(main())
    if as_json:
        emit_json(
            {
                queue_name: {
                    "ready": d.ready,
                    "delayed": d.delayed,
                    "running": d.running,
                    "failed": d.failed,
                    "workers": d.workers,
                }
                for queue_name, d in sorted(depths.items())
            }
        )
        return
    table(
        "Queues",
        ["Queue", "Ready", "Delayed", "Running", "Failed", "Running by worker"],
        [
            (
                queue_name,
                d.ready,
                d.delayed,
                d.running,
                d.failed,
                ", ".join(f"{w} {n}" for w, n in sorted(d.workers.items())),
            )
            for queue_name, d in sorted(depths.items())
        ],
        empty="no jobs in any queue",
    )
