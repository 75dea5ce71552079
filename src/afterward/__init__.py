"""afterward: answer users first, do the rest afterward, lose none of it.

The names below are the public contract (``docs/`` has the guides). Parts with heavier
dependencies live in subpackages imported on first use.
"""

from typing import TYPE_CHECKING, Any

from afterward._config import Settings, configure
from afterward._context import correlate, correlation_id
from afterward._exceptions import (
    AfterwardError,
    BackendError,
    BackendUnavailable,
    BlockingCallError,
    ConfigError,
    DispatchError,
    InvalidCallbackError,
    InvalidRequestError,
    JobError,
    JobTimeout,
    NoScopeError,
    NotFoundError,
    PublishError,
    RequestFailed,
    SchemaError,
    StrayRequestError,
    TaskError,
    TaskTimeout,
)
from afterward._stats import stats
from afterward.defer import DeferredCallback, DeferScope, defer, drain, drain_sync, forget, scope

if TYPE_CHECKING:
    from afterward import concurrency, http
    from afterward.events import DeadLetter, Event, EventBus
    from afterward.jobs import Job, job

__version__ = "0.1.0"

__all__ = [
    "AfterwardError",
    "BackendError",
    "BackendUnavailable",
    "BlockingCallError",
    "ConfigError",
    "DeadLetter",
    "DeferScope",
    "DeferredCallback",
    "DispatchError",
    "Event",
    "EventBus",
    "InvalidCallbackError",
    "InvalidRequestError",
    "Job",
    "JobError",
    "JobTimeout",
    "NoScopeError",
    "NotFoundError",
    "PublishError",
    "RequestFailed",
    "SchemaError",
    "Settings",
    "StrayRequestError",
    "TaskError",
    "TaskTimeout",
    "concurrency",
    "configure",
    "correlate",
    "correlation_id",
    "defer",
    "drain",
    "drain_sync",
    "forget",
    "http",
    "job",
    "scope",
    "stats",
]


# Parts with heavier imports (httpx and aiohttp, the event bus, subprocess-based jobs)
# load on first use, so `import afterward` stays fast and works without the extras.
# name -> (module, attribute in it, or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "http": ("afterward.http", None),
    "concurrency": ("afterward.concurrency", None),
    "Job": ("afterward.jobs", "Job"),
    "job": ("afterward.jobs", "job"),
    "DeadLetter": ("afterward.events", "DeadLetter"),
    "Event": ("afterward.events", "Event"),
    "EventBus": ("afterward.events", "EventBus"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'afterward' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
