"""Per-host concurrency caps (``http.configure(max_per_host=n)``).

A host (its name and port, as aiohttp's ``limit_per_host`` counts them) gets one
semaphore per event loop, shared by every request sent on that loop: pools, batches,
deferred batches and single awaits alike, so a deferred batch cannot flood one partner
while the app's own requests to it also wait their turn. asyncio primitives belong to
one loop; the sync twins all run on afterward's one background loop, so they share one
cap too. A host's semaphore is dropped when nothing holds or awaits it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import httpx

__all__ = ["Gate", "host_gate"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_Key = tuple[str, int | None]

_lock = threading.Lock()
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, Gate]] = (
    weakref.WeakKeyDictionary()
)


class Gate:
    """One host's semaphore on one loop, forgotten once nobody holds or awaits it."""

    __slots__ = ("_gates", "_key", "_semaphore", "_users", "limit")

    def __init__(self, gates: dict[_Key, Gate], key: _Key, limit: int) -> None:
        self._gates, self._key, self.limit = gates, key, limit
        self._semaphore = asyncio.Semaphore(limit)
        self._users = 0

    def locked(self) -> bool:
        """Whether :meth:`acquire` would wait."""
        return self._semaphore.locked()

    async def acquire(self) -> None:
        """Take a slot, waiting for one; pair with :meth:`release`."""
        self._users += 1
        try:
            await self._semaphore.acquire()
        except BaseException:  # cancelled while waiting: no slot taken
            self._leave()
            raise

    def release(self) -> None:
        """Give the slot back."""
        self._semaphore.release()
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if self._users == 0 and self._gates.get(self._key) is self:
            del self._gates[self._key]


def host_gate(url: httpx.URL, limit: int | None) -> Gate | None:
    """The gate a request to ``url`` passes while in flight (``None``: no cap).

    Only ever used on the running loop's own thread, so a loop's table needs no lock;
    the table of tables does (several loops, several threads).
    """
    if limit is None:
        return None
    loop = asyncio.get_running_loop()
    with _lock:
        gates = _gates.get(loop)
        if gates is None:
            gates = _gates[loop] = {}
    key = (url.host, url.port or _DEFAULT_PORTS.get(url.scheme))
    gate = gates.get(key)
    if gate is None or gate.limit != limit:  # a new host, or configure() changed the cap
        gate = gates[key] = Gate(gates, key, limit)
    return gate
