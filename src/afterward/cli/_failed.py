"""``afterward failed list|retry|discard``: queue jobs that used up their tries."""

from __future__ import annotations

from typing import Any

import click

from afterward.cli._bus import open_bus
from afterward.cli._output import CliError, bus_option, emit_json, json_option, progress, run, table
from afterward.cli._records import failed_job_record, short
from afterward.events import read_failed_jobs

__all__ = ["failed"]


@click.group()
def failed() -> None:
    """Failed jobs: ``queue`` jobs that failed on every try, kept with their traceback.

    \b
    Example:
        afterward failed list
    """


@failed.command("list")
@click.option("--queue", "-q", default=None, help="Only this queue.")
@bus_option
@json_option
def list_(queue: str | None, bus_url: str | None, as_json: bool) -> None:
    """List failed jobs.

    \b
    Example:
        afterward failed list --queue default --json
    """

    async def main() -> list[Any]:
        async with open_bus(bus_url) as bus:
            return await read_failed_jobs(bus, queue)

    jobs = [failed_job_record(job) for job in run(main())]
    if as_json:
        emit_json(jobs)
        return
    table(
        "Failed jobs",
        ["ID", "Job", "Queue", "Attempts", "Failed at", "Correlation ID", "Error"],
        [
            (
                job["id"],
                job.get("path"),
                job.get("queue"),
                job.get("attempts"),
                job.get("failed_at"),
                job.get("correlation_id"),
                short(job.get("error"), 60),
            )
            for job in jobs
        ],
        empty="none",
    )


def _act(
    verb: str, ids: tuple[str, ...], all_: bool, queue: str | None, bus_url: str | None
) -> list[str]:
    if bool(ids) == all_:
        raise CliError("give failed job IDs or --all (not both)")

    async def main() -> list[str]:
        async with open_bus(bus_url) as bus:
            targets = (
                [str(job.id) for job in await read_failed_jobs(bus, queue)] if all_ else list(ids)
            )
            action = bus.retry_failed_job if verb == "retry" else bus.discard_failed_job
            done = []
            with progress(f"{verb} failed jobs", len(targets), enabled=len(targets) > 1) as step:
                for target in targets:
                    await action(target)
                    done.append(target)
                    step()
            return done

    return run(main())


@failed.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every failed job (of --queue, if given).")
@click.option("--queue", "-q", default=None, help="With --all: only this queue.")
@bus_option
@json_option
def retry(
    ids: tuple[str, ...], all_: bool, queue: str | None, bus_url: str | None, as_json: bool
) -> None:
    """Put failed jobs back on their queue, with fresh tries, for a worker to run.

    \b
    Examples:
        afterward failed retry 91c0e2...
        afterward failed retry --all --queue emails
    """
    done = _act("retry", ids, all_, queue, bus_url)
    if as_json:
        emit_json({"action": "retry", "ids": done})
    else:
        click.echo(f"retried {len(done)} failed job(s)")


@failed.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every failed job (of --queue, if given).")
@click.option("--queue", "-q", default=None, help="With --all: only this queue.")
@bus_option
@json_option
def discard(
    ids: tuple[str, ...], all_: bool, queue: str | None, bus_url: str | None, as_json: bool
) -> None:
    """Delete failed jobs for good.

    \b
    Examples:
        afterward failed discard 91c0e2...
        afterward failed discard --all
    """
    done = _act("discard", ids, all_, queue, bus_url)
    if as_json:
        emit_json({"action": "discard", "ids": done})
    else:
        click.echo(f"discarded {len(done)} failed job(s)")
