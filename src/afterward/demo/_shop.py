"""The sample shop: ``POST /checkout`` pays inline and does everything else afterward."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route

from afterward import correlation_id
from afterward.dashboard import Recorder, create_app
from afterward.demo._consumers import subscribe_consumers
from afterward.demo._page import INDEX_HTML
from afterward.demo._services import Services
from afterward.integrations.asgi import DeferMiddleware

__all__ = ["CATALOG", "ORDER_SCHEMA", "Shop"]

CATALOG = {
    "A1": ("Espresso beans, 1 kg", 24.0),
    "B2": ("Pour-over kettle", 59.0),
    "C3": ("Grinder", 129.0),
}
DEFERRED_SERVICES = ("inventory", "warehouse", "analytics", "crm")

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "sku", "qty", "total"],
    "properties": {
        "order_id": {"type": "string"},
        "sku": {"type": "string"},
        "qty": {"type": "integer", "minimum": 1},
        "total": {"type": "number"},
    },
}


class Shop:
    """The demo shop around one bus; ``app`` is the ASGI app to serve.

    Args:
        bus: the embedded bus (the demo opens and closes it in the app's lifespan).
        fail_rate: chance that a deferred service call fails, and that the mail
            provider is down for an order's notification (it then dead-letters).
        notification_fail_rate: the mail provider's share alone (default: ``fail_rate``).
        seed: seeds every random draw, for repeatable runs.
        token: the dashboard's token (generated when ``None``).
        echo: where the per-checkout lines go (``None``: nowhere).
        refresh: the dashboard's live-refresh period, in seconds.
    """

    def __init__(
        self,
        bus: Any,
        *,
        fail_rate: float = 0.2,
        notification_fail_rate: float | None = None,
        seed: int | None = None,
        token: str | None = None,
        echo: Callable[[str], None] | None = print,
        refresh: float = 2.0,
    ) -> None:
        self.bus = bus
        self.echo = echo
        self.rng = random.Random(seed)
        self.services = Services(fail_rate, self.rng)
        self.recorder = Recorder().install("afterward.defer")
        self.ledger: dict[str, Any] = {}
        self.deferred_ms: list[float] = []
        # Notified whenever a deferred batch finishes: --load waits on it from its thread.
        self.deferred_done = threading.Condition()
        self.answered: dict[str, float] = {}
        self._numbers = itertools.count(1)
        self._consumer: asyncio.Task[None] | None = None
        bus.schema("order.completed", ORDER_SCHEMA)
        mail_down = fail_rate if notification_fail_rate is None else notification_fail_rate
        subscribe_consumers(bus, self.recorder, mail_down, self.rng, self.ledger)
        self.dashboard = create_app(
            bus, token=token, recorder=self.recorder, title="afterward · demo shop", refresh=refresh
        )
        self.app = DeferMiddleware(
            Starlette(
                routes=[
                    Route("/", self.index),
                    Route("/checkout", self.checkout, methods=["POST"]),
                    Route("/checkout-inline", self.checkout_inline, methods=["POST"]),
                    *self.services.routes(),
                    Mount("/afterward", app=self.dashboard),
                ],
                lifespan=self._lifespan,
            )
        )

    @asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        async with self.bus:
            self._consumer = asyncio.create_task(self.bus.run())
            try:
                yield
            finally:
                self._consumer.cancel()
                await asyncio.gather(self._consumer, return_exceptions=True)
                self.recorder.uninstall("afterward.defer")
                from afterward import http

                await http.aclose()

    async def index(self, request: Request) -> HTMLResponse:
        """``GET /``: the page to place an order."""
        return HTMLResponse(INDEX_HTML)

    async def _order(self, request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse(
                {"error": 'body must be JSON like {"sku": "A1", "qty": 1}'}, status_code=400
            )
        sku, qty = (body.get("sku"), body.get("qty", 1)) if isinstance(body, dict) else (None, None)
        # bool is an int to Python, not to the order schema: refuse it before paying.
        if (
            not isinstance(sku, str)
            or sku not in CATALOG
            or type(qty) is not int
            or not 1 <= qty <= 10
        ):
            return JSONResponse(
                {"error": f"unknown sku or bad qty; skus: {', '.join(CATALOG)}"}, status_code=400
            )
        name, price = CATALOG[sku]
        number = next(self._numbers)
        return {
            "order_id": f"ORD-{number:05d}",
            "sku": sku,
            "name": name,
            "qty": qty,
            "total": price * qty,
        }

    async def _pay(self, request: Request, order: dict[str, Any]) -> Any:
        from afterward import http

        started = time.perf_counter()
        response = await http.post(
            f"{request.base_url}services/payment",
            json={"order_id": order["order_id"], "amount": order["total"]},
        )
        self.recorder.record(
            correlation_id(),
            "http",
            f"payment {response.status_code} (inline)",
            ok=response.is_success,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        response.raise_for_status()
        return response.json()

    def _batch(
        self, request: Request, order: dict[str, Any], started: float, *, deferred: bool = True
    ) -> Any:
        from afterward import http

        cid = correlation_id()
        body = {"order_id": order["order_id"], "sku": order["sku"], "qty": order["qty"]}
        calls = {
            name: http.post(f"{request.base_url}services/{name}", json=body)
            for name in DEFERRED_SERVICES
        }

        def progress(batch: Any, key: str, response: Any) -> None:
            self.recorder.record(
                cid, "http", f"{key} {response.status_code} (deferred batch)", ok=True
            )

        def catch(batch: Any, key: str, outcome: Any) -> None:
            status = getattr(outcome, "status_code", type(outcome).__name__)
            self.recorder.record(cid, "http", f"{key} {status} (deferred batch)", ok=False)

        def finish(batch: Any, results: Any) -> None:
            elapsed = (time.perf_counter() - started) * 1000
            ok = batch.total_requests - batch.failed_requests
            if not deferred:  # only the deferred variant: inline runs are in the response
                answered = 0.0
            else:
                answered = self.answered.pop(cid or "", 0.0)  # even unprinted (--load)
                with self.deferred_done:
                    self.deferred_ms.append(elapsed)
                    self.deferred_done.notify_all()
            self.recorder.record(
                cid,
                "deferred",
                f"deferred batch done: {ok}/{batch.total_requests} ok",
                ok=not batch.has_failures,
                ms=round(elapsed, 1),
            )
            if self.echo and deferred:
                failed = f", {batch.failed_requests} failed" if batch.failed_requests else ""
                self.echo(
                    f"checkout {order['order_id']}: answered in {answered:6.1f} ms, "
                    f"deferred work done {elapsed:6.1f} ms after the request began "
                    f"({batch.total_requests} calls{failed})"
                )

        return http.batch(calls).progress(progress).catch(catch).finally_(finish)

    async def _publish(self, order: dict[str, Any]) -> None:
        event = await self.bus.publish(
            "order.completed",
            {k: order[k] for k in ("order_id", "sku", "qty", "total")},
            key=order["order_id"],
        )
        self.recorder.record(
            correlation_id(), "publish", f"published order.completed {event.id}", event=event.id
        )

    async def checkout(self, request: Request) -> JSONResponse:
        """Pay inline; defer the four service calls; publish ``order.completed``."""
        started = time.perf_counter()
        order = await self._order(request)
        if isinstance(order, JSONResponse):
            return order
        self.recorder.record(correlation_id(), "request", f"POST /checkout {order['order_id']}")
        order["payment"] = await self._pay(request, order)
        self._batch(request, order, started).defer()
        await self._publish(order)
        answered = (time.perf_counter() - started) * 1000
        self.answered[correlation_id() or ""] = answered
        self.recorder.record(
            correlation_id(), "request", f"answered 200 in {answered:.1f} ms", ok=True
        )
        order["correlation_id"] = correlation_id()
        return JSONResponse(order)

    async def checkout_inline(self, request: Request) -> JSONResponse:
        """The same work without afterward: the customer waits for all of it."""
        started = time.perf_counter()
        order = await self._order(request)
        if isinstance(order, JSONResponse):
            return order
        order["payment"] = await self._pay(request, order)
        await self._batch(request, order, started, deferred=False).send()
        await self._publish(order)
        order["correlation_id"] = correlation_id()
        return JSONResponse(order)
