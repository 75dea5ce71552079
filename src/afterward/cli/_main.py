"""``afterward``: the command group and its commands."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="afterward")
def main() -> None:
    """afterward: answer users first, do the rest afterward."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--requests",
    "requests_",
    default=0,
    type=click.IntRange(0),
    help="Send this many requests to the demo, print the table and exit.",
)
def demo(host: str, port: int, requests_: int) -> None:
    """Run the sample app on 127.0.0.1:8000 and print, per request, the response time
    against the time its deferred work took.

    \b
    Example:
        afterward demo --port 8001
    """
    from afterward.cli._demo import run_demo

    run_demo(host, port, requests_)
