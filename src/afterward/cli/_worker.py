"""``afterward worker`` (queue jobs) and ``afterward consume APP:BUS`` (event handlers).

Both stop cleanly on SIGTERM or Ctrl-C and exit 0. ``consume``: the batches in flight
finish and are committed, nothing new starts. ``worker``: nothing more is reserved, the
running jobs get ``--grace`` seconds, the rest is handed back at once. A second signal
stops at once; what was in flight is then delivered again (nothing is lost).
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import click

from afterward.cli._output import CliError, bus_option
from afterward.cli._probes import Probes, probe_options
from afterward.cli._serve import url_of
from afterward.events import EventBus, QueueDepth

__all__ = ["consume", "startup_line", "worker"]


async def _serve(
    bus: EventBus, work: Awaitable[None], stop: Callable[[], None], probes: Probes | None = None
) -> None:
    """Run ``work`` (which connects by itself) until it returns; the first SIGTERM or
    SIGINT calls ``stop``, a second one cancels it. ``probes`` serve meanwhile."""
    loop = asyncio.get_running_loop()
    health = None if probes is None else probes.start()
    task = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            click.echo("stopping after the work in flight (signal again to stop now)", err=True)
            stop()
        elif task is not None:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        # No await before the work: it connects itself, and a signal arriving meanwhile
        # then stops it instead of being reset by it.
        try:
            await work
        finally:
            await bus.aclose()
    except asyncio.CancelledError:
        if signals < 2:
            raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if health is not None:
            health.cancel()
            await asyncio.gather(health, return_exceptions=True)


def _probes(
    bus: EventBus, ready: Callable[[], Awaitable[object]], host: str, port: int | None
) -> Probes | None:
    """The health server ``--health-port`` asks for (bound now: a busy port is one line)."""
    if port is None:
        return None
    probes = Probes(bus, ready, host, port)
    click.echo(f"health on {url_of(probes.socket, host)}: /healthz /readyz /metrics", err=True)
    return probes


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
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds a running job stays this worker's without renewal (renewed every third).",
)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds running jobs get to finish after SIGTERM before they are handed back.",
)
@probe_options
@bus_option
def worker(
    queue: str,
    concurrency: int,
    lease: float,
    grace: float,
    bus_url: str | None,
    health_port: int | None,
    health_host: str,
) -> None:
    """Run durable jobs dispatched with connection="queue".

    Any number of workers, on any number of machines where the bus is a server, share
    one queue. Prints one status line whenever the queue's counts change.
    --health-port serves /healthz (the worker's loop answers), /readyz (the bus
    answers) and /metrics (Prometheus).

    \b
    Example:
        afterward worker --queue default --concurrency 8 --bus sqlite:///shop.db
    """
    try:
        bus = EventBus(bus_url)
        bus.use_for_jobs(queue)  # jobs dispatched by jobs go to the same queue
        runner = bus.worker(
            queue,
            concurrency=concurrency,
            lease=lease,
            grace=grace,
            on_depth=lambda depth: click.echo(status_line(queue, depth), err=True),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    click.echo(
        f"worker {runner.name} on {bus.url}: queue {queue!r}, concurrency {concurrency}, "
        f"lease {lease:g} s, grace {grace:g} s",
        err=True,
    )
    probes = _probes(bus, lambda: bus.queue_stats(queue), health_host, health_port)
    asyncio.run(_serve(bus, runner.run(), runner.stop, probes))


def status_line(queue: str, depth: QueueDepth) -> str:
    """``queue 'q': ready 3 · delayed 10 · running 4 (w1 2, w2 2) · failed 0``."""
    by_worker = ", ".join(f"{name} {n}" for name, n in sorted(depth.workers.items()))
    running = f"running {depth.running}" + (f" ({by_worker})" if by_worker else "")
    return (
        f"queue {queue!r}: ready {depth.ready} · delayed {depth.delayed} · {running} · "
        f"failed {depth.failed}"
    )


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


def startup_line(bus: EventBus, groups: tuple[str, ...]) -> str:
    """What ``consume`` says first: the bus, the groups and, for a bus whose state lives
    apart (Kafka's ``store=``), that state store, which every consumer of a group must
    share."""
    line = f"consuming on {bus.url}: groups {', '.join(groups) or 'all'}"
    store = dict(parse_qsl(urlsplit(bus.url).query)).get("store")
    if bus.url.lower().startswith("kafka:") and store:
        line += f"; state store {store} (every consumer of a group must use this one)"
    return line


@click.command()
@click.argument("app")
@click.option("--group", "-g", "groups", multiple=True, help="Only these groups (repeatable).")
@probe_options
def consume(app: str, groups: tuple[str, ...], health_port: int | None, health_host: str) -> None:
    """Run the event handlers subscribed on the bus APP (MODULE:BUS).

    --health-port serves /healthz, /readyz and /metrics, as for `afterward worker`.

    \b
    Example:
        afterward consume shop.events:bus --group billing --health-port 8081
    """
    bus = _load_bus(app)
    click.echo(startup_line(bus, groups), err=True)
    # Readiness reads the groups' positions and the topics' ends: the log and the state.
    probes = _probes(bus, bus.lag, health_host, health_port)
    asyncio.run(_serve(bus, bus.run(list(groups) or None), bus.stop, probes))
