"""How the CLI talks to people and scripts: tables, ``--json``, progress bars, errors.

Every command prints a rich table (or a short sentence) for people, and one JSON
document with ``--json`` (JSON lines for streams such as ``events tail``). Bad input
ends with one line on stderr (``Error: ...``) and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

import click

__all__ = [
    "CliError",
    "bus_option",
    "emit_json",
    "json_option",
    "one_line",
    "progress",
    "run",
    "table",
    "to_jsonable",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line error for the user; exits with status 1."""


def one_line(error: BaseException) -> str:
    """The error's message on a single line, with its type when the message is empty."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def bus_option(fn: F) -> F:
    """The ``--bus URL`` option every command takes (env ``AFTERWARD_BUS``)."""
    return click.option(
        "--bus",
        "bus_url",
        envvar="AFTERWARD_BUS",
        default=None,
        metavar="URL",
        help="Event bus URL (env AFTERWARD_BUS; default: sqlite:///afterward.db in the "
        "current directory), e.g. sqlite:///shop.db, redis://127.0.0.1:6379/0.",
    )(fn)


def json_option(fn: F) -> F:
    """The ``--json`` flag: print machine-readable JSON instead of a table."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table."
    )(fn)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine to completion (one loop per CLI invocation)."""
    return asyncio.run(coro)


def to_jsonable(value: Any) -> Any:
    """Turn events, dead letters, datetimes and dataclasses into JSON-ready values."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict):
        return {k: to_jsonable(v) for k, v in fields.items() if not k.startswith("_")}
    return str(value)


def emit_json(value: Any, *, lines: bool = False) -> None:
    """Print ``value`` as JSON (compact with ``lines=True``, for one record per line)."""
    if lines:
        click.echo(json.dumps(to_jsonable(value), separators=(",", ":"), ensure_ascii=False))
    else:
        click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def _console() -> Any:
    from rich.console import Console

    # Width from the terminal; 120 when piped so that tables stay readable in logs.
    return Console(highlight=False, soft_wrap=False, width=None if _isatty() else 120)


def _isatty() -> bool:
    import sys

    return sys.stdout.isatty()


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    empty: str = "nothing to show",
) -> None:
    """Print a rich table, or the ``empty`` sentence when there are no rows."""
    from rich.markup import escape
    from rich.table import Table

    rows = list(rows)
    if not rows:
        click.echo(f"{title}: {empty}")
        return
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        # Values come from events: escape them so "[red]" in a payload is printed as-is.
        out.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
    _console().print(out)


@contextmanager
def progress(
    label: str, total: int | None, *, enabled: bool = True
) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr; yields ``advance()``. Hidden when ``enabled`` is false."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
