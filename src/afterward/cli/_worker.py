"""``afterward worker`` (queue jobs) and ``afterward consume APP:BUS`` (event handlers).

Both stop cleanly on SIGTERM or Ctrl-C: the batches in flight finish and are committed,
nothing new starts, and the process exits 0. A second signal stops at once; what was in
flight is then delivered again to the next consumer (nothing is lost).
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from typing import Any

import click

from afterward.cli._output import CliError, bus_option
from afterward.events import EventBus, subscribe_worker

__all__ = ["consume", "worker"]


async def _serve(bus: EventBus, groups: list[str] | None) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            click.echo("stopping after the work in flight (signal again to stop now)", err=True)
            bus.stop()
        elif task is not None:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        # No await before run(): it connects itself, and a signal arriving meanwhile
        # then stops it instead of being reset by it.
        try:
            await bus.run(groups)
        finally:
            await bus.aclose()
    except asyncio.CancelledError:
        if signals < 2:
            raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@click.command()
@click.option("--queue", "-q", default="default", show_default=True, help="Queue to run.")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Jobs run at once.",
)
@click.option(
    "--lease",
    type=click.FloatRange(1),
    default=30.0,
    show_default=True,
    help="Seconds before another worker takes over from one that stopped responding.",
)
@bus_option
def worker(queue: str, concurrency: int, lease: float, bus_url: str | None) -> None:
    """Run durable jobs dispatched with connection="queue".

    \b
    Example:
        afterward worker --queue default --concurrency 8 --bus sqlite:///shop.db
    """
    try:
        bus = EventBus(bus_url, claim_ttl=lease)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    bus.use_for_jobs(queue)  # jobs dispatched by jobs go to the same queue
    group = subscribe_worker(bus, queue, concurrency)
    click.echo(f"worker on {bus.url}: queue {queue!r}, concurrency {concurrency}", err=True)
    asyncio.run(_serve(bus, [group]))


def _load_bus(target: str) -> EventBus:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CliError(f"expected MODULE:BUS (e.g. shop.events:bus), got {target!r}")
    sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from exc
    found: Any = getattr(module, attribute, None)
    if not isinstance(found, EventBus):
        raise CliError(f"{target!r} is not an afterward EventBus (got {found!r})")
    return found


@click.command()
@click.argument("app")
@click.option("--group", "-g", "groups", multiple=True, help="Only these groups (repeatable).")
def consume(app: str, groups: tuple[str, ...]) -> None:
    """Run the event handlers subscribed on the bus APP (MODULE:BUS).

    \b
    Example:
        afterward consume shop.events:bus --group billing
    """
    bus = _load_bus(app)
    click.echo(f"consuming on {bus.url}: groups {', '.join(groups) or 'all'}", err=True)
    asyncio.run(_serve(bus, list(groups) or None))
