"""Closing driver clients that belong to an event loop (aiokafka, redis-py asyncio).

A bus may be used from several loops (the app's, afterward's background loop for the
sync twins); each loop gets its own client, and a client must be closed on its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

__all__ = ["close_on_their_loops"]

C = TypeVar("C")


async def close_on_their_loops(
    clients: Mapping[asyncio.AbstractEventLoop, C], close: Callable[[C], Awaitable[None]]
) -> None:
    """Close each client on the loop it belongs to.

    The current loop's client is closed here; another running loop's is closed there and
    awaited; a client whose loop has stopped cannot be closed any more and is dropped.
    """
    current = asyncio.get_running_loop()
    for loop, client in clients.items():
        if loop is current:
            await close(client)
        elif loop.is_running():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(client), loop))  # type: ignore[arg-type]
