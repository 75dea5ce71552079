"""Where afterward learns that a database transaction is open in the current context.

Integrations (SQLAlchemy, Django) register a *provider*: a function returning the
innermost open transaction it knows of in the current context, or ``None``. The core
never imports a database library; it only asks the providers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["OpenTransaction", "current_transaction", "register_provider"]


class OpenTransaction(Protocol):
    """An open transaction, as seen by afterward."""

    #: The library object the transaction belongs to (a SQLAlchemy ``Session``, a
    #: Django connection alias...), for parts that write in the same transaction.
    owner: Any

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once the outermost transaction commits; drop it on rollback."""


Provider = Callable[[], OpenTransaction | None]

_providers: list[Provider] = []


def register_provider(provider: Provider) -> None:
    """Register a transaction provider once (registering it again does nothing)."""
    if provider not in _providers:
        _providers.append(provider)


def current_transaction() -> OpenTransaction | None:
    """Return the innermost open transaction any provider reports, or ``None``."""
    for provider in _providers:
        transaction = provider()
        if transaction is not None:
            return transaction
    return None
