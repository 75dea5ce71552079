"""The SQL-backed peers of the durable-jobs benchmark: huey on SQLite, Procrastinate on
PostgreSQL.

huey keeps its queue in a SQLite file in the measurement's temporary directory.
Procrastinate gets a database of its own, ``afterward_bench_<random>`` on the local
PostgreSQL (``BENCH_PG``, default ``postgresql://postgres@127.0.0.1:5432/postgres``,
the server the benchmark connects to create it), with procrastinate's schema applied,
dropped at the end whatever happened.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from bench._queue_run import BIN, Send, async_sender, measure, repeat

__all__ = ["PEERS"]

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _huey() -> float:
    worker = [
        str(BIN / "huey_consumer"),
        "bench._queue_jobs.huey",
        "-w",
        "4",
        "-k",
        "thread",
        "-q",
    ]

    @contextmanager
    def client(jobs: ModuleType) -> Iterator[Send]:
        yield repeat(jobs.noop)

    return measure("huey", worker, client)


@contextmanager
def _database() -> Iterator[str]:
    """A new PostgreSQL database on the ``BENCH_PG`` server; its DSN."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"afterward_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(PG, dbname=name)
    finally:
        with psycopg.connect(PG, autocommit=True) as admin:
            # FORCE: a worker killed mid-job may still hold a connection.
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _procrastinate() -> float:
    worker = [
        str(BIN / "procrastinate"),
        "--app",
        "bench._queue_jobs.app",
        "worker",
        "--concurrency",
        "4",
    ]

    def client(jobs: ModuleType) -> Any:
        async def connect() -> Any:
            await jobs.app.open_async()
            await jobs.app.schema_manager.apply_schema_async()
            return jobs.noop

        async def enqueue(task: Any) -> None:
            await task.defer_async()

        async def close(task: Any) -> None:
            await jobs.app.close_async()

        return async_sender(connect, enqueue, close)

    with _database() as dsn:
        return measure("procrastinate", worker, client, env={"BENCH_PG_DSN": dsn})


PEERS = [
    ("huey, SQLite storage, 4 threads (peer)", _huey),
    ("Procrastinate, PostgreSQL, concurrency 4 (peer)", _procrastinate),
]
