"""A group's handler for a topic, with its options: what ``bus.subscribe`` records."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from afterward._backoff import check_backoff
from afterward._exceptions import ConfigError
from afterward.events._envelope import Event, validate_topic

__all__ = ["BatchHandler", "Handler", "Subscription", "check_group"]

#: An event handler; a ``batch=True`` one takes a ``list[Event]`` instead.
Handler = Callable[[Event], Awaitable[None] | None]
BatchHandler = Callable[[list[Event]], Awaitable[None] | None]


def _no_handler(event: Event) -> None:
    raise AssertionError("a subscription's handler is set by with_handler()")


def check_group(group: object) -> str:
    """Return ``group`` if it is a valid group name, else raise :class:`ConfigError`."""
    if not isinstance(group, str) or not group or len(group) > 249:
        raise ConfigError(f"group must be a non-empty str of <= 249 chars, got {group!r}")
    return group


@dataclass(frozen=True)
class Subscription:
    """A handler subscribed to ``topic`` for ``group``, with its options."""

    topic: str
    group: str
    handler: Handler | BatchHandler
    retries: int
    backoff: tuple[float, ...]
    concurrency: int
    start: Literal["earliest", "latest"]
    inbox: Any = None
    raw: bool = False
    batch: bool = False
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        # Looked up once, not per event (inspect is not free on the hot path).
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.handler))

    @classmethod
    def checked(
        cls,
        topic: str,
        group: str,
        *,
        retries: object,
        backoff: object,
        concurrency: object,
        start: object,
        inbox: Any,
        raw: object = False,
        batch: object = False,
    ) -> Subscription:
        """Validate ``bus.subscribe``'s arguments; the handler comes with
        :meth:`with_handler` (the decorator's argument).

        Raises:
            ConfigError: a bad group, retries, backoff, concurrency or start.
            PublishError: a bad topic name.
        """
        validate_topic(topic)
        check_group(group)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
        delays = check_backoff(f"subscribe({topic!r}, group={group!r})", backoff)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if start not in ("earliest", "latest"):
            raise ConfigError(f"start must be 'earliest' or 'latest', got {start!r}")
        if not isinstance(raw, bool):
            raise ConfigError(f"raw must be a bool, got {raw!r}")
        if not isinstance(batch, bool):
            raise ConfigError(f"batch must be a bool, got {batch!r}")
        if batch and inbox is not None:
            raise ConfigError("a batch handler cannot use inbox= (one transaction per event)")
        return cls(
            topic,
            group,
            _no_handler,
            retries,
            delays,
            concurrency,
            start,
            inbox,
            raw,
            batch,
        )

    def with_handler(self, handler: Handler | BatchHandler) -> Subscription:
        """This subscription with ``handler``.

        Raises:
            ConfigError: ``handler`` is not callable.
        """
        if not callable(handler):
            raise ConfigError(f"a handler must be callable, got {handler!r}")
        return replace(self, handler=handler)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if not self.backoff:
            return 0.0
        return self.backoff[min(attempt - 1, len(self.backoff) - 1)]
