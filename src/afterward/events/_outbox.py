"""The transactional outbox: events published inside a database transaction.

``publish`` inside an open SQLAlchemy ``Session`` transaction (after
``afterward.integrations.sqlalchemy.install()``) or a Django ``atomic`` block writes the
event to an ``afterward_outbox`` table through that transaction's own connection. When
the outermost transaction commits, a relay thread in this process moves the rows to the
bus at once; on rollback they never existed.

The relay claims rows with ``DELETE ... RETURNING`` in a transaction on the user's
database, appends them to the bus, then commits: two relays never take the same rows.
If the process dies after the append and before that commit, the rows are relayed again
later with the same event IDs, which every group skips (the processed-ID store), so
each event is handled once. Leftovers (a process that died before relaying) go out on
the next relay for that database: after the next commit that publishes, or when
:meth:`EventBus.relay_outbox` is called (``run()`` calls it for every database this bus
has written an outbox row to).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from afterward._transactions import current_transaction
from afterward.events._outbox_store import OutboxOwner, OutboxStore
from afterward.events._records import AppendRecord

__all__ = [
    "relay",
    "store_for",
    "write_to_outbox",
    "write_to_outbox_async",
]

logger = logging.getLogger("afterward.events")


def store_for(target: Any) -> OutboxStore:
    """The outbox of a transaction owner, an engine, a sessionmaker or a Django alias."""
    # Each adapter imports its framework: only the one the app uses is loaded.
    if isinstance(target, str):
        from afterward.events._outbox_django import DjangoOutbox

        return DjangoOutbox(target)
    from afterward.events._outbox_sqlalchemy import SQLAlchemyOutbox

    return SQLAlchemyOutbox.of(target)


def _open(bus: OutboxOwner) -> tuple[Any, OutboxStore] | None:
    transaction = current_transaction()
    if transaction is None:
        return None
    store = store_for(transaction.owner)
    bus.outboxes[store.ident] = store
    transaction.on_commit(lambda: _relayer.wake(bus, store))
    return transaction.owner, store


def write_to_outbox(bus: OutboxOwner, records: list[AppendRecord]) -> bool:
    """Write ``records`` to the open transaction's outbox; false when none is open."""
    found = _open(bus)
    if found is None:
        return False
    owner, store = found
    store.write(owner, bus.outbox_address, records)
    return True


async def write_to_outbox_async(bus: OutboxOwner, records: list[AppendRecord]) -> bool:
    """:func:`write_to_outbox` for ``publish`` (works inside an ``AsyncSession`` too)."""
    found = _open(bus)
    if found is None:
        return False
    owner, store = found
    await store.write_async(owner, bus.outbox_address, records)
    return True


def relay(bus: OutboxOwner, store: OutboxStore, batch: int = 500) -> int:
    """Move every pending outbox row of ``bus`` in ``store`` to the bus (blocking; not
    on afterward's background loop)."""
    total = 0
    while True:
        moved = store.claim(bus, batch)
        total += moved
        if moved < batch:
            return total


class _Relayer:
    """One daemon thread per process relaying outboxes after commits."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[OutboxOwner, OutboxStore]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self, bus: OutboxOwner, store: OutboxStore) -> None:
        """Relay ``store``'s rows of ``bus`` soon (starting the thread if needed)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="afterward-outbox", daemon=True
                )
                self._thread.start()
        self._queue.put((bus, store))

    def _serve(self) -> None:
        while True:
            bus, store = self._queue.get()
            try:
                relay(bus, store)
            except Exception:
                # The rows stay in the outbox; the next commit or relay_outbox retries.
                logger.exception("outbox relay to %s failed; rows kept for a later relay", bus)


_relayer = _Relayer()
