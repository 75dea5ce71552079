"""A renewable lease: a claim one owner holds for ``ttl`` seconds past its last renewal.

The bus holds one per (group, topic) it consumes on backends without consumer groups
(memory, SQLite), a Redis member holds one on its group's topic, and the work queue's
workers hold one per reserved job. Renewal is cheap to ask for: :meth:`Lease.hold`
only goes to the backend once a third of the lease has passed, and
:meth:`Lease.keep` renews it every third while long work runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import IntEnum

from afterward._exceptions import BackendError

__all__ = ["Held", "Lease"]

logger = logging.getLogger("afterward.events")


class Held(IntEnum):
    """What a claim attempt found (what a backend's claim primitive returns)."""

    #: another owner holds it
    NO = 0
    #: this owner held it already and renewed it
    RENEWED = 1
    #: nobody held it (not even this owner: its lease had lapsed): taken afresh
    FRESH = 2


class Lease:
    """One owner's lease on something, renewed through ``claim(ttl)``.

    Args:
        claim: asks the backend for (or to renew) the lease for ``ttl`` seconds; returns
            a :class:`Held` code (a bool works too: true counts as renewed).
        ttl: seconds the lease lasts without renewal.
    """

    def __init__(self, claim: Callable[[float], Awaitable[int]], ttl: float) -> None:
        self._claim = claim
        self.ttl = ttl
        self.held = False
        self._until = 0.0

    async def hold(self) -> Held:
        """Claim or renew when a third of the lease has passed (else trust it).

        Returns:
            :attr:`Held.NO`, :attr:`Held.RENEWED` (held before, still held) or
            :attr:`Held.FRESH` (newly held: whatever happened while it was not, a
            takeover included, is the caller's to catch up with).
        """
        now = time.monotonic()
        if self.held and self._until - now > self.ttl * 2 / 3:
            return Held.RENEWED
        code = Held(int(await self._claim(self.ttl)))
        if code is Held.NO:
            self.held = False
            return code
        fresh = not self.held or code is Held.FRESH
        self.held = True
        self._until = now + self.ttl
        return Held.FRESH if fresh else Held.RENEWED

    async def renew(self) -> bool:
        """Renew now; false (and no longer held) when it was lost or had lapsed."""
        started = time.monotonic()
        code = Held(int(await self._claim(self.ttl)))
        if code is Held.RENEWED:
            self._until = started + self.ttl
            return True
        # Lost, or lapsed before this renewal (then the next hold() says FRESH).
        self.held = False
        return False

    async def keep(self) -> None:
        """Renew every third of the lease until cancelled or lost.

        A backend error is logged and the next renewal tried: the lease may outlive a
        blip, and the work's own reads and commits report a real outage.
        """
        while self.held:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.renew()
            except BackendError as exc:
                logger.info("renewing a lease failed (%s); trying again", exc)

    def forget(self) -> None:
        """Count the lease as not held (it was released)."""
        self.held = False
