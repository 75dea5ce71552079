"""Jobs as JSON: the :class:`JobPayload` every connection carries, and back to code.

A job travels as its import path (``"module:QualName"``) plus JSON arguments, never as
a pickle, so any process that can import the job's module can run it: a background
child, a queue worker on another machine, a new release of the same app.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from afterward._backoff import backoff_step
from afterward._exceptions import DispatchError

__all__ = ["JobPayload", "check_arguments", "checked_path", "resolve"]


@dataclass(slots=True)
class JobPayload:
    """One dispatched job, as it is stored and sent between processes.

    Attributes:
        id: a UUID naming this dispatch (stable across retries and hand-offs).
        path: ``"module:QualName"`` of the :class:`~afterward.Job` subclass or
            ``@job`` function.
        args: positional arguments, JSON values.
        kwargs: keyword arguments, JSON values.
        correlation_id: bound while the job runs (the dispatching request's ID).
        attempt: the 1-based number of the next attempt to run.
        tries: attempts in total.
        backoff: seconds to wait before attempt 2, 3, ...; the last value repeats.
        timeout: seconds per attempt, or ``None``.
        available_at: Unix time before which the next attempt must not start.
        dispatched_at: Unix time of the dispatch.
        priority: on the ``queue`` connection, among due jobs higher runs first.
        traceparent: the W3C trace context of the dispatch (when traced), which each
            attempt's span continues, in whichever process runs it.
        tracestate: its W3C ``tracestate``, if any.
    """

    id: str
    path: str
    args: list[Any]
    kwargs: dict[str, Any]
    correlation_id: str
    attempt: int = 1
    tries: int = 1
    backoff: list[float] = field(default_factory=list)
    timeout: float | None = None
    available_at: float = 0.0
    dispatched_at: float = 0.0
    priority: int = 0
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def delay(self) -> float:
        """Seconds left before the next attempt may start (0 when it may start now)."""
        return max(0.0, self.available_at - time.time())

    def backoff_after(self, attempt: int) -> float:
        """Seconds to wait after attempt ``attempt`` failed, before the next one."""
        return backoff_step(self.backoff, attempt)

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, as JSON values (shared with the payload, not copied:
        ``dataclasses.asdict`` deep-copies, 10x slower)."""
        return {name: getattr(self, name) for name in _PAYLOAD_FIELDS}

    def to_json(self) -> str:
        """Serialize to a JSON object (the wire format of every connection)."""
        return json.dumps(self.as_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> JobPayload:
        """Parse what :meth:`to_json` wrote.

        Raises:
            DispatchError: ``text`` is not a job payload.
        """
        try:
            data = json.loads(text)
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise DispatchError(f"not a job payload: {exc}") from exc


_PAYLOAD_FIELDS = tuple(f.name for f in fields(JobPayload))


def resolve(path: str) -> Any:
    """Import the object named by ``"module:QualName"``.

    Raises:
        DispatchError: the module or the attribute does not exist.
    """
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DispatchError(f"job {path!r} cannot be imported: {exc}") from exc
    return target


_paths: dict[object, str] = {}


def checked_path(target: Any) -> str:
    """Return the import path of ``target``, checking it resolves back to ``target``.

    The check runs once per job class or function (the answer is cached).

    Raises:
        DispatchError: ``target`` is defined in a function body, in ``__main__`` or is
            a lambda, or its path does not import back to it.
    """
    path = _paths.get(target)
    if path is not None:
        return path
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    path = f"{module}:{qualname}"
    why = None
    if not module or not qualname or "<" in qualname:
        why = "it is defined inside a function body or is a lambda"
    elif module == "__main__":
        why = "it is defined in __main__, which another process imports as something else"
    else:
        try:
            if resolve(path) is not target:
                why = "that path names a different object"
        except DispatchError as exc:
            why = str(exc)
    if why is not None:
        raise DispatchError(
            f"cannot dispatch {path}: a job must be importable by its path ({why}); "
            "define it at the top level of an importable module"
        )
    _paths[target] = path
    return path


def check_arguments(
    path: str, fn: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Return JSON round-tripped copies of ``args`` and ``kwargs``.

    Raises:
        DispatchError: an argument is not JSON-serializable; the message names it.
    """
    try:
        copied_args, copied_kwargs = json.loads(json.dumps([args, kwargs], allow_nan=False))
    except (TypeError, ValueError) as exc:
        name, value = _culprit(fn, args, kwargs)
        raise DispatchError(
            f"cannot dispatch {path}: argument {name!r} ({type(value).__name__}) is not "
            f"JSON-serializable: {exc}. Job arguments must be JSON values (str, int, "
            "float, bool, None, lists, dicts with str keys); pass an ID, not an object"
        ) from exc
    return copied_args, copied_kwargs


def _culprit(
    fn: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, Any]:
    try:
        named = dict(inspect.signature(fn).bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        named = {**{str(i): a for i, a in enumerate(args)}, **kwargs}
    for name, value in named.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return name, value
    return "?", None
