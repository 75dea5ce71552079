"""``on_lag`` watches: fire a callback when a group's lag on a topic crosses a threshold."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from afterward._exceptions import ConfigError
from afterward._stats import incr

__all__ = ["LagCallback", "LagWatch"]

logger = logging.getLogger("afterward.events")

LagCallback = Callable[[str, str, int], Awaitable[None] | None]


@dataclass
class LagWatch:
    """One ``on_lag(threshold, callback)`` registration and what it saw last."""

    threshold: int
    callback: LagCallback
    above: dict[tuple[str, str], bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise ConfigError(f"on_lag threshold must be an int, got {self.threshold!r}")
        if self.threshold < 1:
            raise ConfigError(f"on_lag threshold must be >= 1, got {self.threshold}")
        if not callable(self.callback):
            raise ConfigError(f"on_lag callback must be callable, got {self.callback!r}")

    async def check(self, group: str, topic: str, lag: int) -> None:
        """Fire when the lag goes from below the threshold (or unknown) to at/above it."""
        now = lag >= self.threshold
        was = self.above.get((group, topic), False)
        self.above[(group, topic)] = now
        if now and not was:
            try:
                if inspect.iscoroutinefunction(self.callback):
                    await self.callback(group, topic, lag)
                else:
                    result = await asyncio.to_thread(self.callback, group, topic, lag)
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                incr("hooks.failed")
                logger.exception(
                    "on_lag callback %r failed for group %r topic %r (lag %d)",
                    self.callback,
                    group,
                    topic,
                    lag,
                )
