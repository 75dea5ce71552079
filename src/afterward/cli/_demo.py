"""``afterward demo``: the sample shop (the app itself lives in :mod:`afterward.demo`)."""

from __future__ import annotations

import click

from afterward.cli._output import CliError, bus_option

__all__ = ["demo"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@bus_option
@click.option(
    "--db",
    default=None,
    metavar="PATH",
    help="Short for --bus sqlite:///PATH (default: a new temp file; wins over AFTERWARD_BUS).",
)
@click.option(
    "--fail-rate",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Chance that a deferred service call fails and that the mail provider "
    "is down for an order (its notification then dead-letters).",
)
@click.option("--seed", default=None, type=int, help="Seed the simulation, for repeatable runs.")
@click.option(
    "--token",
    envvar="AFTERWARD_DASHBOARD_TOKEN",
    default=None,
    help="Dashboard token (generated and printed when not given).",
)
@click.option(
    "--load",
    default=0,
    type=click.IntRange(0),
    metavar="N",
    help="Fire N checkouts with afterward and N inline, print the latency table, exit.",
)
@click.option(
    "--concurrency",
    default=10,
    show_default=True,
    type=click.IntRange(1, 200),
    help="With --load: checkouts in flight at once.",
)
def demo(
    host: str,
    port: int,
    bus_url: str | None,
    db: str | None,
    fail_rate: float,
    seed: int | None,
    token: str | None,
    load: int,
    concurrency: int,
) -> None:
    """Run the sample shop on 127.0.0.1:8000: checkout pays inline, answers, and does
    inventory, warehouse, analytics, CRM and three event consumers afterward; the
    dashboard is at /afterward. Prints one line per checkout: response time against
    the time the deferred work took.

    \b
    Examples:
        afterward demo
        afterward demo --port 8001 --fail-rate 0.5 --seed 7
        afterward demo --load 200          # p50/p99: afterward vs the same work inline
        afterward demo --bus redis://127.0.0.1:6379/0
    """
    from afterward.cli._demo_run import run_demo  # uvicorn, the shop: only when run

    if db and bus_url:
        source = click.get_current_context().get_parameter_source("bus_url")
        if source is click.core.ParameterSource.COMMANDLINE:
            raise CliError("give --bus or --db, not both")
        bus_url = None  # AFTERWARD_BUS is for every command; --db was asked for here

    run_demo(
        host=host,
        port=port,
        bus_url=bus_url,
        db=db,
        fail_rate=fail_rate,
        seed=seed,
        token=token,
        load=load,
        concurrency=concurrency,
    )
