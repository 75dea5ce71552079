"""``afterward``: the command group, its error handling and its commands."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from afterward._exceptions import AfterwardError
from afterward.cli._dashboard import dashboard
from afterward.cli._demo import demo
from afterward.cli._dlq import dlq
from afterward.cli._events import events
from afterward.cli._failed import failed
from afterward.cli._output import CliError, one_line
from afterward.cli._prune import prune
from afterward.cli._queue import queue
from afterward.cli._schemas import schemas
from afterward.cli._worker import consume, worker

__all__ = ["main"]

_DRIVER_LOGGERS = ("aiokafka", "kafka")


class AfterwardGroup(click.Group):
    """A click group that turns afterward's errors into one line and exit status 1.

    Users see ``Error: no dead letter with ID 'x'``, not a traceback; unexpected bugs
    still raise, so they can be reported with their traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AfterwardError as exc:
            raise CliError(one_line(exc)) from exc
        except json.JSONDecodeError as exc:
            raise CliError(f"malformed JSON: {one_line(exc)}") from exc
        except (ConnectionError, TimeoutError) as exc:
            raise CliError(f"cannot reach the bus: {one_line(exc)}") from exc


@click.group(cls=AfterwardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="afterward")
def main() -> None:
    """afterward: answer users first, do the rest afterward.

    \b
    Examples:
        afterward demo                       # the sample shop on 127.0.0.1:8000
        afterward dashboard --bus sqlite:///shop.db
        afterward dlq list --json
    """
    if not logging.getLogger().handlers:
        # Nobody configured logging: drivers would print their own connection errors
        # through logging's last-resort handler, next to our one-line error.
        for driver in _DRIVER_LOGGERS:
            logging.getLogger(driver).setLevel(logging.CRITICAL)


for _command in (demo, dashboard, events, dlq, failed, prune, queue, schemas, worker, consume):
    main.add_command(_command)
