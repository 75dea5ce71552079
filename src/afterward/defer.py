"""After-response work: :func:`defer`, :func:`forget` and :func:`scope`.

A *defer scope* collects callbacks while a request (or a ``with scope():`` block, a job,
an event handler) runs, and runs them once it is over: after the response has been
sent, or when the block exits. See ``docs/defer.md`` for the whole story.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Literal

from afterward import _loop, _runtime, _telemetry
from afterward._context import _correlation_id, is_valid_correlation_id, new_correlation_id
from afterward._exceptions import (
    BlockingCallError,
    ConfigError,
    InvalidCallbackError,
    NoScopeError,
)
from afterward._runtime import CallbackState
from afterward._stats import incr
from afterward._transactions import _providers, current_transaction

__all__ = ["DeferScope", "DeferredCallback", "defer", "drain", "drain_sync", "forget", "scope"]

#: The defer scope of the current context (a request, a ``with scope():`` block, a job).
_current_scope: ContextVar[DeferScope | None] = ContextVar("afterward_scope", default=None)


class DeferredCallback:
    """One piece of deferred work, as returned by :func:`defer`.

    Attributes:
        name: the name given to ``defer`` (else the function's qualified name).
        always: whether it runs even when the response failed.
        correlation_id: the ID bound when it was deferred; bound again while it runs.
        state: ``"pending"``, ``"running"``, ``"done"``, ``"failed"``, ``"skipped"``
            (the response failed), ``"forgotten"``, ``"replaced"``, ``"lost"``
            (unfinished at the end of the shutdown grace period) or ``"rescued"`` (taken
            over then, e.g. a deferred job moved to the durable queue).
    """

    __slots__ = ("always", "args", "correlation_id", "fn", "kwargs", "name", "origin", "state")

    def __init__(
        self,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str,
        always: bool,
        correlation_id: str,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.always = always
        self.correlation_id = correlation_id
        self.state: CallbackState = "pending"
        #: The span it was deferred in, when traced: its span links to it.
        self.origin: object | None = None

    def __repr__(self) -> str:
        return f"<DeferredCallback {self.name!r} {self.state}>"


class DeferScope:
    """Collects deferred callbacks and runs them, in order, when it is finished.

    Use :func:`scope` to open one by hand; the HTTP middlewares, jobs and event handlers
    open their own. Usable as ``with`` (waits for the callbacks on exit) and
    ``async with`` (awaits them on exit).

    Attributes:
        correlation_id: the ID bound inside the scope and in its callbacks.
    """

    def __init__(self, correlation_id: str | None = None) -> None:
        self.correlation_id = correlation_id or _correlation_id.get() or new_correlation_id()
        self._callbacks: list[DeferredCallback] = []
        self._names: dict[str, int] = {}
        # Named callbacks waiting for a transaction to commit, so forget() reaches them.
        self._held: dict[str, list[DeferredCallback]] = {}
        self._lock = threading.Lock()
        self._cursor = 0
        # collecting: the request/block is still running; running: callbacks are being
        # run; idle: finished and every callback was taken.
        self._state: Literal["collecting", "running", "idle"] = "collecting"
        self._closed = False
        self._ok = True
        self._tokens: tuple[Token[DeferScope | None], Token[str | None]] | None = None

    @property
    def callbacks(self) -> list[DeferredCallback]:
        """Every callback registered so far, in run order (for tests and tooling)."""
        with self._lock:
            return list(self._callbacks)

    # -- registration -------------------------------------------------------------

    def _hold(self, callback: DeferredCallback, name: str) -> None:
        """Remember a named callback that waits for a transaction to commit."""
        with self._lock:
            self._held.setdefault(name, []).append(callback)

    def _add(self, callback: DeferredCallback, name: str | None) -> None:
        with self._lock:
            if name is not None and name in self._held:
                held = [c for c in self._held[name] if c is not callback]
                if held:
                    self._held[name] = held
                else:
                    del self._held[name]
            if callback.state != "pending":  # forgotten while its transaction was open
                return
            index = self._names.get(name) if name is not None else None
            if index is not None and index >= self._cursor:
                # Same name, not started yet: the new callback takes the old one's place.
                self._callbacks[index].state = "replaced"
                self._callbacks[index] = callback
                return
            if name is not None:
                self._names[name] = len(self._callbacks)
            self._callbacks.append(callback)
            restart = self._state == "idle"
            if restart:
                self._state = "running"
        if restart:  # added after the run ended (a transaction committed late)
            _runtime.start_run(self)

    def _forget(self, name: str) -> bool:
        with self._lock:
            forgotten = False
            for held in self._held.pop(name, []):
                held.state = "forgotten"
                forgotten = True
            index = self._names.get(name)
            if index is not None and self._callbacks[index].state == "pending":
                del self._names[name]
                self._callbacks[index].state = "forgotten"
                forgotten = True
            return forgotten

    # -- running --------------------------------------------------------------------

    # The runtime's side of a scope (:class:`afterward._runtime.Runnable`).

    @property
    def succeeded(self) -> bool:
        """Whether the response (or block) succeeded: else only ``always`` callbacks run."""
        return self._ok

    def enter_run(self) -> None:
        """Bind this scope in the task running its callbacks (work they defer joins it)."""
        _current_scope.set(self)

    def next_callback(self) -> DeferredCallback | None:
        """Take the next pending callback, or mark the run over (called by the runtime)."""
        with self._lock:
            while self._cursor < len(self._callbacks):
                callback = self._callbacks[self._cursor]
                self._cursor += 1
                if callback.state == "pending":
                    return callback
            self._state = "idle" if self._closed else "collecting"
            return None

    def unfinished(self) -> list[DeferredCallback]:
        """Callbacks running, or pending and due to run (for a drain's lost-work report)."""
        with self._lock:
            return [
                c
                for c in self._callbacks
                if c.state == "running" or (c.state == "pending" and (self._ok or c.always))
            ]

    def _begin(self, ok: bool, *, close: bool) -> bool:
        """Mark the scope finished (or flushed) and say whether a run must start."""
        with self._lock:
            if close:
                self._closed = True
            self._ok = ok
            if self._state == "running":
                return False
            if self._cursor >= len(self._callbacks):
                self._state = "idle" if self._closed else "collecting"
                return False
            self._state = "running"
            return True

    def finish(self, ok: bool) -> None:
        """Close the scope and start its callbacks in the background, without waiting.

        Used by the HTTP middlewares once the response is complete: ``ok`` is false
        when the status was >= 400 or the endpoint raised (only ``always=True``
        callbacks run then).
        """
        if self._begin(ok, close=True):
            _runtime.start_run(self)

    def run_now(self) -> None:
        """Run the callbacks registered so far, now, and wait for them.

        The scope stays open: callbacks deferred later run at its end (or at the next
        ``run_now``). Coroutine callbacks run on afterward's background loop.
        """
        if self._begin(True, close=False):
            _wait_for_run_sync(self, "afterward_scope.run_now() / DeferScope.run_now()")

    async def run_now_async(self) -> None:
        """Async twin of :meth:`run_now`: coroutine callbacks run on the caller's loop."""
        if self._begin(True, close=False):
            await _wait_for_run(self)

    # -- context managers ---------------------------------------------------------

    def __enter__(self) -> DeferScope:
        self._tokens = (_current_scope.set(self), _correlation_id.set(self.correlation_id))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unbind()
        if self._begin(exc_type is None, close=True):
            _wait_for_run_sync(self, "`with afterward.scope():`")

    async def __aenter__(self) -> DeferScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unbind()
        if self._begin(exc_type is None, close=True):
            await _wait_for_run(self)

    def _unbind(self) -> None:
        if self._tokens is not None:
            scope_token, cid_token = self._tokens
            self._tokens = None
            _current_scope.reset(scope_token)
            _correlation_id.reset(cid_token)

    def __repr__(self) -> str:
        return f"<DeferScope {self.correlation_id} {self._state} callbacks={len(self._callbacks)}>"


def _wait_for_run_sync(defer_scope: DeferScope, what: str) -> None:
    run = _runtime.start_run(defer_scope, background=True)
    if _loop.in_background_loop():
        # Waiting here would block the very loop the callbacks run on, forever. They
        # still run (the run is started); the caller learns to use the async form.
        raise BlockingCallError(
            f"{what} waits for its callbacks and cannot be used on afterward's own event "
            "loop thread (a coroutine callback, an async job run by a sync twin...): use "
            "`async with afterward.scope():` / `await scope.run_now_async()` there"
        )
    run.result()


async def _wait_for_run(defer_scope: DeferScope) -> None:
    # Shielded: if the waiting task is cancelled, the callbacks still run to the end and
    # the run's future (which drains wait on) must not be cancelled with it.
    await asyncio.shield(asyncio.wrap_future(_runtime.start_run(defer_scope)))


def scope(correlation_id: str | None = None) -> DeferScope:
    """Open a defer scope by hand, for scripts, CLI commands and tests.

    Leaving the block runs the callbacks deferred inside it and waits for them; if an
    exception leaves the block, only ``always=True`` callbacks run.

    Example:
        >>> with afterward.scope():
        ...     afterward.defer(print, "after the block")
        after the block

    Args:
        correlation_id: the ID bound inside the block; defaults to the current one,
            else a new UUID.

    Raises:
        ConfigError: ``correlation_id`` is not 1-200 printable ASCII characters.
    """
    if correlation_id is not None and not (
        isinstance(correlation_id, str) and is_valid_correlation_id(correlation_id)
    ):
        raise ConfigError(
            f"scope() correlation_id must be 1-200 printable ASCII characters, "
            f"got {correlation_id!r}"
        )
    return DeferScope(correlation_id)


def _name_of(fn: Callable[..., object]) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    return getattr(target, "__qualname__", None) or repr(target)


def defer(
    fn: Callable[..., object],
    /,
    *args: Any,
    name: str | None = None,
    always: bool = False,
    after_commit: bool = True,
    **kwargs: Any,
) -> DeferredCallback:
    """Run ``fn(*args, **kwargs)`` after the response (or when the scope exits).

    Example:
        >>> @app.post("/orders")
        ... async def create_order(order: Order):
        ...     saved = await orders.save(order)
        ...     defer(send_receipt, saved.id, name="receipt")
        ...     return saved

    Args:
        fn: a function or coroutine function; sync functions run on a worker thread,
            never on the event loop.
        name: names the callback: deferring another callback with the same name in
            the scope replaces this one (keeping its place); :func:`forget` cancels it.
        always: also run when the response failed (status >= 400 or an exception).
        after_commit: when a database transaction is open (SQLAlchemy once
            ``afterward.integrations.sqlalchemy.install()`` ran, or Django ``atomic``),
            join the scope only if the outermost transaction commits. ``False`` joins
            at once.

    Returns:
        The :class:`DeferredCallback`, whose ``state`` tells what became of it.

    Raises:
        NoScopeError: no defer scope is open in this context.
        InvalidCallbackError: ``fn`` is not callable or ``name`` is not a non-empty string.
    """
    current = _current_scope.get()
    if current is None:
        raise NoScopeError(
            "defer() needs an open defer scope: add afterward's DeferMiddleware to your "
            "app (afterward.integrations.asgi, .wsgi or .django), or wrap the code in "
            "`with afterward.scope():` / `async with afterward.scope():`"
        )
    if not callable(fn):
        raise InvalidCallbackError(f"defer() needs a callable, got {type(fn).__name__} {fn!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidCallbackError(f"defer() name must be a non-empty string, got {name!r}")
    callback = DeferredCallback(
        fn,
        args,
        kwargs,
        name or _name_of(fn),
        always,
        _correlation_id.get() or current.correlation_id,
    )
    incr("defer.registered")
    if _telemetry.tracing is not None:
        callback.origin = _telemetry.tracing.capture()
    if after_commit and _providers:
        transaction = current_transaction()
        if transaction is not None:
            if name is not None:
                current._hold(callback, name)
            transaction.on_commit(functools.partial(current._add, callback, name))
            return callback
    current._add(callback, name)
    return callback


def forget(name: str) -> bool:
    """Cancel the callback named ``name`` in the current scope if it has not started.

    This includes a callback still waiting for its database transaction to commit.

    Returns:
        ``True`` if a pending callback was cancelled, ``False`` if there was none.

    Raises:
        NoScopeError: no defer scope is open in this context.
        InvalidCallbackError: ``name`` is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise InvalidCallbackError(f"forget() name must be a non-empty string, got {name!r}")
    current = _current_scope.get()
    if current is None:
        raise NoScopeError(
            "forget() needs an open defer scope (afterward's DeferMiddleware or afterward.scope())"
        )
    return current._forget(name)


async def drain(timeout: float | None = None) -> bool:
    """Wait until every deferred callback in the process has finished.

    Call it from a shutdown hook the middleware does not cover (the ASGI middleware
    drains on lifespan shutdown and every process drains at exit on its own).

    Args:
        timeout: seconds to wait, default ``afterward.configure(grace_period=...)``.

    Returns:
        ``True`` if everything finished; ``False`` if time ran out, after logging each
        unfinished callback as lost with its name and correlation ID.

    Raises:
        ConfigError: ``timeout`` is not ``None`` or seconds >= 0.
    """
    return await _runtime.drain(timeout)


def drain_sync(timeout: float | None = None) -> bool:
    """Blocking twin of :func:`drain` (WSGI servers' worker-exit hooks, Django)."""
    return _runtime.drain_sync(timeout)
