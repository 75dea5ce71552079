"""Plumbing every networked backend shares: driver errors and clients per event loop.

- :class:`DriverErrors` turns a driver's exceptions into :class:`~afterward.BackendError`
  / :class:`~afterward.BackendUnavailable` with what was being done, and gives back a
  cancellation the driver swallowed (aiokafka and redis-py can finish a request whose
  task was cancelled meanwhile and return normally: a cancelled consumer would never
  stop).
- :class:`LoopClients` keeps one driver client per event loop (aiokafka and redis-py
  asyncio clients belong to the loop they started on). The sync twins run on
  afterward's background loop, which lives as long as the process while a sync user
  (Flask, Django) rarely closes the bus: that loop's clients are kept per URL in a
  module registry, so none is garbage-collected unclosed, and closed at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from afterward._exceptions import BackendError, BackendUnavailable
from afterward._loop import background_loop, in_background_loop

__all__ = ["DriverErrors", "LoopClients"]

C = TypeVar("C")


class DriverErrors:
    """Translate one driver's errors for one backend.

    Args:
        backend: the scheme, set as the errors' ``.backend``.
        describe: how messages name the bus (``"Kafka bus 127.0.0.1:9092"``).
        unavailable: driver exceptions meaning the server cannot be reached.
        failed: the driver's other exceptions (its base class).
        on_unavailable: awaited before raising :class:`BackendUnavailable` (drop cached
            clients and metadata, say).
    """

    def __init__(
        self,
        backend: str,
        describe: str,
        unavailable: tuple[type[BaseException], ...],
        failed: tuple[type[BaseException], ...],
        on_unavailable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.backend = backend
        self.describe = describe
        self.unavailable = unavailable
        self.failed = failed
        self.on_unavailable = on_unavailable

    @contextlib.asynccontextmanager
    async def __call__(self, doing: str) -> AsyncIterator[None]:
        """``async with errors("reading 't'"):`` around driver calls."""
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            yield
        except BackendError:
            raise
        except self.unavailable as exc:
            if self.on_unavailable is not None:
                await self.on_unavailable()
            raise BackendUnavailable(
                f"{self.describe} unreachable while {doing}: {_text(exc)}", backend=self.backend
            ) from exc
        except self.failed as exc:
            raise BackendError(
                f"{self.describe} failed while {doing}: {_text(exc)}", backend=self.backend
            ) from exc
        if task is not None and task.cancelling() > cancelling:
            raise asyncio.CancelledError(f"cancelled while {doing}")


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)


#: The background loop's clients, by (kind, URL), with how to close each.
_background: dict[tuple[str, str], tuple[Any, Callable[[Any], Awaitable[None]]]] = {}


class LoopClients(Generic[C]):
    """One client per event loop for one bus URL (see the module docstring).

    Args:
        kind: names the driver (``"kafka"``, ``"redis"``): with ``url``, the key of the
            background loop's client in the process-wide registry.
        url: the bus URL.
        close: closes a client (on its own loop).
    """

    def __init__(self, kind: str, url: str, close: Callable[[C], Awaitable[None]]) -> None:
        self._key = (kind, url)
        self._close = close
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, C] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> C | None:
        """This loop's client, if it has one."""
        if in_background_loop():
            entry = _background.get(self._key)
            return None if entry is None else entry[0]
        return self._by_loop.get(asyncio.get_running_loop())

    def setdefault(self, client: C) -> C:
        """Keep ``client`` for this loop unless it has one; return the one kept."""
        if in_background_loop():
            kept: C = _background.setdefault(self._key, (client, self._close))[0]
            return kept
        return self._by_loop.setdefault(asyncio.get_running_loop(), client)

    def pop(self) -> C | None:
        """Forget this loop's client (after an outage) and return it, to close."""
        if in_background_loop():
            entry = _background.pop(self._key, None)
            return None if entry is None else entry[0]
        return self._by_loop.pop(asyncio.get_running_loop(), None)

    async def close_all(self) -> None:
        """Close every loop's client on the loop it belongs to.

        The current loop's is closed here; another running loop's is closed there and
        awaited; one whose loop has stopped cannot be closed any more and is dropped.
        """
        clients = dict(self._by_loop)
        self._by_loop = weakref.WeakKeyDictionary()
        entry = _background.pop(self._key, None)
        if entry is not None:
            clients[background_loop()] = entry[0]
        current = asyncio.get_running_loop()
        for loop, client in clients.items():
            if loop is current:
                await self._close(client)
            elif loop.is_running():
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(
                        asyncio.run_coroutine_threadsafe(_closing(self._close, client), loop)
                    )


async def _closing(close: Callable[[C], Awaitable[None]], client: C) -> None:
    await close(client)


@atexit.register
def _close_background() -> None:
    # Close the sync twins' clients while their loop still runs (it is a daemon thread).
    for client, close in list(_background.values()):
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_closing(close, client), background_loop()).result(5)
    _background.clear()
