"""The outbox table on a Django database (SQLite, PostgreSQL), by alias. Imported only
when an app publishes inside a Django ``atomic`` block: it needs Django, not SQLAlchemy."""

from __future__ import annotations

from typing import Any

from afterward._exceptions import ConfigError
from afterward._loop import run_sync
from afterward.events._outbox_store import OutboxOwner, OutboxStore, outbox_records, outbox_rows
from afterward.events._records import AppendRecord

__all__ = ["DjangoOutbox"]

_DJANGO_DDL = {
    "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "id BIGSERIAL PRIMARY KEY",
}


class DjangoOutbox(OutboxStore):
    """The outbox table in a Django database (by alias)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.ident = ("django", alias)

    def _create(self, cursor: Any, vendor: str) -> None:
        if vendor not in _DJANGO_DDL:
            raise ConfigError(f"the outbox supports SQLite and PostgreSQL, not {vendor!r}")
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS afterward_outbox ({_DJANGO_DDL[vendor]}, "
            "bus VARCHAR(500) NOT NULL, topic VARCHAR(249) NOT NULL, key TEXT, "
            "event_id VARCHAR(255) NOT NULL, ts DOUBLE PRECISION NOT NULL, "
            "payload TEXT NOT NULL)"
        )

    def write(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        from django.db import connections

        connection = connections[self.alias]
        with connection.cursor() as cursor:
            self._create(cursor, connection.vendor)
            cursor.executemany(
                "INSERT INTO afterward_outbox (bus, topic, key, event_id, ts, payload) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [tuple(row.values()) for row in outbox_rows(bus_url, records)],
            )

    def claim(self, bus: OutboxOwner, limit: int) -> int:
        from django.db import connections, transaction

        connection = connections[self.alias]
        try:
            with transaction.atomic(using=self.alias), connection.cursor() as cursor:
                self._create(cursor, connection.vendor)
                cursor.execute(
                    "DELETE FROM afterward_outbox WHERE id IN (SELECT id FROM afterward_outbox "
                    "WHERE bus = %s ORDER BY id LIMIT %s) "
                    "RETURNING id, topic, key, event_id, ts, payload",
                    [bus.outbox_address, limit],
                )
                rows = cursor.fetchall()
                if rows:
                    run_sync(bus.append_now(outbox_records(rows)))
        finally:
            if not connection.in_atomic_block:
                connection.close()  # a relay thread's own connection: do not leak it
        return len(rows)
