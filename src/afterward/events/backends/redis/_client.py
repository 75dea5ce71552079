"""What a :class:`~afterward.events.backends.redis.RedisLog` and its members share: the
bus's redis-py clients (one per event loop), its keys, and error translation.

A module of its own so that the log (``_log.py``) and the member (``_member.py``) both
import it and neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis

from afterward._exceptions import ConfigError
from afterward.events.backends._driver import DriverErrors, LoopClients
from afterward.events.backends.redis import _scripts
from afterward.events.backends.redis._codec import Keys, split_url

__all__ = ["RedisClients"]

#: redis-py's exceptions that mean the server cannot be reached.
UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)

#: What Redis says to an ``0-*`` append after an entry with a larger, automatic ID.
_BEHIND_TOP = "equal or smaller than the target stream top item"

T = TypeVar("T")


async def _close(client: Redis) -> None:
    await client.aclose()


class RedisClients:
    """The redis-py clients of one bus URL.

    Args:
        url: the bus URL (``prefix=`` is afterward's; other query parameters go to
            redis-py).

    Attributes:
        url: the URL redis-py gets.
        keys: the bus's keys, under its prefix.
        errors: ``async with clients.errors("doing what"):`` around redis-py calls turns
            their exceptions into :class:`~afterward.BackendError` /
            :class:`~afterward.BackendUnavailable` and gives back a cancellation redis-py
            swallowed (it can finish a command whose task was cancelled meanwhile).

    Raises:
        ConfigError: redis-py rejects the URL.
    """

    def __init__(self, url: str) -> None:
        self.url, prefix = split_url(url)
        try:
            Redis.from_url(self.url)  # validate now: a bad URL is a ConfigError
        except ValueError as exc:
            raise ConfigError(f"bad Redis bus URL {url!r}: {exc}") from exc
        self.keys = Keys(prefix)
        self.errors = DriverErrors(
            "redis", f"Redis bus {self.url!r}", UNAVAILABLE, (redis_errors.RedisError,)
        )
        # redis-py's asyncio client belongs to the loop it first ran on; the sync twins
        # run on afterward's background loop, whose clients LoopClients keeps per URL.
        self._clients: LoopClients[Redis] = LoopClients("redis", self.url, _close)

    def get(self) -> Redis:
        """This event loop's client (made on first use)."""
        client = self._clients.get()
        if client is None:
            client = self._clients.setdefault(self._new())
        return client

    def _new(self) -> Redis:
        # A blocking pool: a burst of concurrent publishes waits for a connection instead
        # of failing with "Too many connections".
        pool = BlockingConnectionPool.from_url(self.url, health_check_interval=30, timeout=30)
        return Redis.from_pool(pool)

    async def script(
        self, script: _scripts.Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run ``script`` on this loop's client (inside :attr:`errors`)."""
        return await _scripts.run(self.get(), script, keys, args)

    async def adopt(self, stream: str) -> int:
        """Renumber the entries another client added to ``stream`` with an automatic ID
        (``XADD ... *``) into the dense offsets, in order (``adopt.lua``); how many.

        Call inside :attr:`errors`.
        """
        return int(await self.script(_scripts.ADOPT, [stream], []))

    async def adopting(self, streams: Iterable[str], append: Callable[[], Awaitable[T]]) -> T:
        """``append()``; when Redis refuses it because a stream ends with entries added
        with an automatic ID, adopt them (:meth:`adopt`) and append again.

        Call inside :attr:`errors`.
        """
        try:
            return await append()
        except redis_errors.ResponseError as exc:
            if _BEHIND_TOP not in str(exc):
                raise
        for stream in streams:
            await self.adopt(stream)
        return await append()

    async def aclose(self) -> None:
        """Close every loop's client, each on its own loop."""
        await self._clients.close_all()
