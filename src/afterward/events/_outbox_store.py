"""The outbox's seam: a store (one database's outbox table, an adapter per framework),
the bus side it relays to, and the row format both adapters share."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from afterward.events._records import AppendRecord
from afterward.events._wire import decode, pack_headers, unpack_headers

__all__ = ["OutboxOwner", "OutboxStore", "outbox_records", "outbox_rows"]


class OutboxOwner(Protocol):
    """The bus side of an outbox (a bus's core): where its rows go, and how."""

    outboxes: dict[object, OutboxStore]

    @property
    def outbox_address(self) -> str:
        """The bus URL stored with each row: the relay moves only its own bus's rows."""
        ...

    async def append_now(self, records: list[AppendRecord]) -> None:
        """Append ``records`` to the bus's log (never back to an outbox)."""


class OutboxStore:
    """An outbox table in one database. Adapters: SQLAlchemy and Django."""

    #: identifies the database, so a bus relays each one once per wake-up
    ident: object

    def write(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        """Insert ``records`` through ``owner``'s open transaction."""
        raise NotImplementedError

    async def write_async(self, owner: Any, bus_url: str, records: list[AppendRecord]) -> None:
        """:meth:`write` from a coroutine (an ``AsyncSession``'s transaction)."""
        self.write(owner, bus_url, records)

    def claim(self, bus: OutboxOwner, limit: int) -> int:
        """In one transaction: delete up to ``limit`` of ``bus``'s rows, append them to
        the bus, commit; return how many. Runs on a plain thread."""
        raise NotImplementedError


def outbox_rows(bus_url: str, records: list[AppendRecord]) -> list[dict[str, Any]]:
    """The outbox rows of ``records`` (columns: bus, topic, key, event_id, ts, payload;
    ``payload`` holds the record's value and headers as JSON text)."""
    return [
        {
            "bus": bus_url,
            "topic": r.topic,
            "key": r.key,
            "event_id": r.event_id,
            "ts": r.timestamp,
            "payload": json.dumps({"value": r.value.decode(), "headers": pack_headers(r.headers)}),
        }
        for r in records
    ]


def outbox_records(rows: Sequence[Any]) -> list[AppendRecord]:
    """The records of claimed rows (id, topic, key, event_id, ts, payload), in id order."""
    records = []
    for _, topic, key, _event_id, ts, payload in sorted(rows):
        fields = json.loads(payload)
        value, headers = fields["value"].encode(), unpack_headers(fields["headers"])
        event = decode(topic, 0, 0, value, headers, key, ts)
        records.append(AppendRecord(event, value, headers))
    return records
