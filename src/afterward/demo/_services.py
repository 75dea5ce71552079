"""The shop's "external" services, simulated: slow, and failing at a chosen rate.

They are plain Starlette routes served by the demo's own uvicorn under ``/services/``,
so the demo needs no second port; the shop reaches them over real HTTP on loopback,
through ``afterward.http``, like any remote API.
"""

from __future__ import annotations

import asyncio
import random

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["LATENCY", "Services"]

#: Simulated latency of each service, in seconds (low, high).
LATENCY = {
    "payment": (0.020, 0.040),
    "inventory": (0.060, 0.120),
    "warehouse": (0.080, 0.160),
    "analytics": (0.040, 0.100),
    "crm": (0.100, 0.200),
}


class Services:
    """The simulated services; every non-payment call fails with ``fail_rate``.

    Payment never fails here: the demo is about what happens *after* the customer
    has paid. Draws come from one seeded generator, so ``--seed`` replays a run.
    """

    def __init__(self, fail_rate: float, rng: random.Random) -> None:
        self.fail_rate = fail_rate
        self.rng = rng
        self.calls: dict[str, int] = dict.fromkeys(LATENCY, 0)

    async def _call(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in LATENCY:
            return JSONResponse({"error": f"no service {name!r}"}, status_code=404)
        self.calls[name] += 1
        low, high = LATENCY[name]
        await asyncio.sleep(self.rng.uniform(low, high))  # the simulated network + work
        body = await request.json()
        if name != "payment" and self.rng.random() < self.fail_rate:
            return JSONResponse({"error": f"{name} is having a bad day"}, status_code=503)
        reference = f"{name[:3].upper()}-{self.rng.randrange(10**6):06d}"
        return JSONResponse({"ok": True, "service": name, "reference": reference, **body})

    def routes(self) -> list[Route]:
        """``POST /services/{name}`` for payment, inventory, warehouse, analytics, crm."""
        return [Route("/services/{name}", self._call, methods=["POST"])]
