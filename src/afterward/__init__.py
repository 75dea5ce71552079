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
    ConfigError,
    DispatchError,
    InvalidCallbackError,
    InvalidRequestError,
    JobError,
    NoScopeError,
    NotFoundError,
    PublishError,
    SchemaError,
    StrayRequestError,
    TaskError,
    TaskTimeout,
)
from afterward._stats import stats
from afterward.defer import DeferredCallback, DeferScope, defer, drain, drain_sync, forget, scope

if TYPE_CHECKING:
    from afterward import http

__version__ = "0.1.0"

__all__ = [
    "AfterwardError",
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "DeferScope",
    "DeferredCallback",
    "DispatchError",
    "InvalidCallbackError",
    "InvalidRequestError",
    "JobError",
    "NoScopeError",
    "NotFoundError",
    "PublishError",
    "SchemaError",
    "Settings",
    "StrayRequestError",
    "TaskError",
    "TaskTimeout",
    "configure",
    "correlate",
    "correlation_id",
    "defer",
    "drain",
    "drain_sync",
    "forget",
    "http",
    "scope",
    "stats",
]


def __getattr__(name: str) -> Any:
    # `afterward.http` needs httpx and aiohttp (the `http` extra): import it on first use
    # so `import afterward` works, and stays fast, without them.
    if name == "http":
        import importlib

        return importlib.import_module("afterward.http")
    raise AttributeError(f"module 'afterward' has no attribute {name!r}")
