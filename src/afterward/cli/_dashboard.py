"""``afterward dashboard``: serve the web dashboard for a bus."""

from __future__ import annotations

import click

from afterward.cli._bus import load_bus, make_bus
from afterward.cli._output import CliError, bus_option, run
from afterward.cli._serve import bind, url_of
from afterward.dashboard._auth import is_loopback

__all__ = ["dashboard"]


@click.command()
@bus_option
@click.option(
    "--app",
    "app_spec",
    default=None,
    metavar="MODULE:BUS",
    help="Use your app's bus object (with its subscribers, so retries run them).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="AFTERWARD_DASHBOARD_TOKEN",
    default=None,
    help="Access token (env AFTERWARD_DASHBOARD_TOKEN); generated when not given.",
)
@click.option("--no-auth", is_flag=True, help="Serve without a token (loopback hosts only).")
@click.option(
    "--lag-threshold",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Flag lags at or above this on the overview.",
)
def dashboard(
    bus_url: str | None,
    app_spec: str | None,
    host: str,
    port: int,
    token: str | None,
    no_auth: bool,
    lag_threshold: int,
) -> None:
    """Serve the web dashboard: throughput and lag, dead letters and failed jobs with
    retry/discard, a correlation ID's flow, deferred-work counters.

    Every page needs the token printed at start (or --token); --no-auth is refused
    unless --host is a loopback address.

    \b
    Examples:
        afterward dashboard --bus sqlite:///shop.db
        afterward dashboard --app shop.events:bus --port 9000
    """
    if no_auth and not is_loopback(host):
        raise CliError(f"--no-auth is only allowed on a loopback host, not {host!r}")
    if no_auth and token:
        raise CliError("give --token or --no-auth, not both")
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from afterward.dashboard import create_app

    bus = load_bus(app_spec) if app_spec else make_bus(bus_url)
    panel = create_app(bus, token=token, auth=not no_auth, lag_threshold=lag_threshold)
    sock = bind(host, port)
    # The lifespan only starts the charts' sampler: it cannot fail on the bus.
    root = Starlette(routes=[Mount("/", app=panel)], lifespan=panel.lifespan)
    server = uvicorn.Server(uvicorn.Config(root, log_level="warning", lifespan="on"))

    async def serve() -> None:
        # Connect before printing the URLs: an unreachable server is one line, not a
        # traceback from uvicorn's lifespan.
        async with bus:
            url = url_of(sock, host) + "/"
            click.echo(f"afterward dashboard on {url}")
            if panel.token:
                click.echo(f"  open: {url}?token={panel.token}")
                click.echo(f"  or send the header: Authorization: Bearer {panel.token}")
            else:
                click.echo("  no authentication (--no-auth): anyone on this machine can use it")
            await server.serve(sockets=[sock])

    try:
        run(serve())
    finally:
        sock.close()  # uvicorn closes it too, but not when the bus cannot be reached
