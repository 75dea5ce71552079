"""Transaction-aware defer for SQLAlchemy ``Session`` and ``AsyncSession``::

    from afterward.integrations import sqlalchemy as afterward_sqla
    afterward_sqla.install()

After ``install()``, a callback deferred while a session's transaction is open in the
current context waits for it: it joins the defer scope when the outermost transaction
commits and is dropped when it rolls back. A callback deferred inside a savepoint
(``begin_nested()``) is dropped if that savepoint rolls back, and otherwise follows the
enclosing transaction.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from afterward._stats import incr
from afterward._transactions import register_provider

__all__ = ["install", "open_session"]

# Sessions whose root transaction began in this context, innermost last.
_sessions: ContextVar[tuple[Session, ...]] = ContextVar("afterward_sqla_sessions", default=())
# Callbacks waiting on a transaction (root or savepoint), and the ones that committed.
_waiting: weakref.WeakKeyDictionary[SessionTransaction, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)
_committed: weakref.WeakSet[SessionTransaction] = weakref.WeakSet()
_installed = False


def _innermost(session: Session) -> SessionTransaction | None:
    transaction = session.get_nested_transaction() or session.get_transaction()
    return transaction if transaction is not None and transaction.is_active else None


class _SessionTransaction:
    """The innermost open transaction of a session, as afterward sees it."""

    def __init__(self, session: Session, transaction: SessionTransaction) -> None:
        self.owner: Any = session
        self._transaction = transaction

    def on_commit(self, fn: Callable[[], None]) -> None:
        _waiting.setdefault(self._transaction, []).append(fn)


def open_session() -> Session | None:
    """The innermost session with an open transaction in the current context."""
    for session in reversed(_sessions.get()):
        if _innermost(session) is not None:
            return session
    return None


def _provider() -> _SessionTransaction | None:
    session = open_session()
    if session is None:
        return None
    transaction = _innermost(session)
    assert transaction is not None
    return _SessionTransaction(session, transaction)


def _after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        _sessions.set((*(s for s in _sessions.get() if s is not session), session))


def _after_commit(session: Session) -> None:
    transaction = _innermost_any(session)
    if transaction is not None:
        _committed.add(transaction)


def _innermost_any(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _real_parent(transaction: SessionTransaction) -> SessionTransaction | None:
    # Skip SQLAlchemy's internal subtransactions: only roots and savepoints commit.
    parent = transaction.parent
    while parent is not None and parent.parent is not None and not parent.nested:
        parent = parent.parent
    return parent


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        stack = _sessions.get()
        if session in stack:
            _sessions.set(tuple(s for s in stack if s is not session))
    callbacks = _waiting.pop(transaction, None)
    if not callbacks:
        return
    if transaction not in _committed:
        incr("defer.rolled_back", len(callbacks))
        return
    parent = _real_parent(transaction)
    if parent is not None:  # a released savepoint: now wait for the enclosing one
        _waiting.setdefault(parent, []).extend(callbacks)
        return
    for callback in callbacks:
        callback()


def install() -> None:
    """Make :func:`afterward.defer` (and the outbox) SQLAlchemy-transaction-aware.

    Idempotent: calling it again does nothing.
    """
    global _installed
    if _installed:
        return
    event.listen(Session, "after_transaction_create", _after_transaction_create)
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_transaction_end", _after_transaction_end)
    register_provider(_provider)
    _installed = True
