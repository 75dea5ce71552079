"""The aiokafka clients behind the Kafka backend, per event loop, and closing them safely.

aiokafka binds each client to the loop it started on, so :mod:`.kafka` keeps one
:class:`Conn` per loop; the sync twins' loop (afterward's background loop) outlives the
buses that use it, so its connections are kept per URL and closed at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient

from afterward._loop import background_loop

__all__ = ["Conn", "Reader", "background_conns", "close", "start"]

#: Clients of afterward's background loop (the sync twins), by bus URL.
background_conns: dict[str, Any] = {}


@dataclass
class Reader:
    """A group-less consumer assigned every partition of one topic."""

    consumer: AIOKafkaConsumer
    next: dict[int, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    used: float = 0.0


@dataclass
class Conn:
    """The aiokafka clients of one event loop (aiokafka binds clients to their loop)."""

    producer: AIOKafkaProducer
    meta: AIOKafkaConsumer
    admin: AIOKafkaAdminClient
    readers: dict[str, list[Reader]] = field(default_factory=dict)
    #: Appends waiting for the next produce round: (records with partitions, waiter).
    pending: list[tuple[list[tuple[Any, int]], asyncio.Future[Any]]] = field(default_factory=list)
    #: The task writing ``pending`` to the producer, while there is any.
    flusher: asyncio.Task[None] | None = None
    closed: bool = False


async def start(consumer: AIOKafkaConsumer, conn: Conn | None) -> None:
    """Start ``consumer``; never leave it half-started or outliving a closed ``conn``."""
    try:
        await consumer.start()
        if conn is not None and conn.closed:
            raise kafka_errors.KafkaConnectionError("the connection was reset meanwhile")
    except BaseException:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise


async def close(conn: Conn) -> None:
    conn.closed = True
    consumers = [r.consumer for rs in conn.readers.values() for r in rs]
    for client in [conn.producer, conn.meta, *consumers, conn.admin]:
        try:
            await (client.close() if client is conn.admin else client.stop())
        except asyncio.CancelledError:
            # aiokafka's fetcher re-raises the cancellation of its own inner task on
            # close; only a cancellation of *this* task may stop the cleanup.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception:  # a client of a broker that is gone: close the others anyway
            continue


@atexit.register
def _close_background() -> None:
    # Close the sync twins' clients while their loop still runs (it is a daemon thread).
    for conn in list(background_conns.values()):
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(conn), background_loop()).result(5)
    background_conns.clear()
