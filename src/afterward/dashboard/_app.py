"""``create_app``: the dashboard as a Starlette app, mountable in any ASGI app."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from afterward.dashboard._auth import AuthMiddleware, new_token
from afterward.dashboard._data import Sampler
from afterward.dashboard._recorder import Recorder, default_recorder

__all__ = ["Dashboard", "create_app"]

_HERE = Path(__file__).parent


def _format_time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Dashboard:
    """The dashboard ASGI app; ``token`` is the one to give people (``None``: no auth).

    Use :func:`create_app` to make one. Its sampler (the charts' readings) runs in the
    background from the app's lifespan startup (:attr:`lifespan` for a parent app that
    runs one), or from its first request when mounted without one.
    """

    def __init__(self, app: Any, token: str | None, sampler: Sampler) -> None:
        self._app = app
        self.token = token
        self.sampler = sampler

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Sample while the block runs: ``Starlette(..., lifespan=dashboard.lifespan)``."""
        self.sampler.start()
        try:
            yield
        finally:
            await self.sampler.stop()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        self.sampler.start()  # mounted apps get no lifespan: the first request starts it
        await self._app(scope, receive, send)

    async def _serve_lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.sampler.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.sampler.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    bus: Any,
    *,
    token: str | None = None,
    auth: bool = True,
    recorder: Recorder | None = None,
    lag_threshold: int = 10_000,
    refresh: float = 2.0,
    title: str = "afterward",
) -> Dashboard:
    """The dashboard for ``bus``, ready to serve or to mount at a path.

    Args:
        bus: an :class:`afterward.EventBus` (any backend), opened by the caller.
        token: the access token; a random one is generated when ``None``; read it back
            from ``app.token`` to print or pass on.
        auth: ``False`` serves without a token. Only do this on a loopback interface
            (``afterward dashboard --no-auth`` refuses anything else).
        recorder: the flight recorder whose steps feed the flow timeline; when
            ``None``, the process-wide one, which captures afterward's log records.
        lag_threshold: lags at or above this are flagged on the overview.
        refresh: seconds between live refreshes of the open page (0: off).
        title: shown in the header.

    Example:
        >>> from starlette.routing import Mount
        >>> dashboard = create_app(bus, token=os.environ["AFTERWARD_DASHBOARD_TOKEN"])
        >>> app = Starlette(routes=[Mount("/afterward", app=dashboard), ...])
    """
    try:
        from jinja2 import Environment, FileSystemLoader, select_autoescape
        from starlette.applications import Starlette
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the afterward dashboard needs Starlette and Jinja2 ({exc.name} is missing): "
            "pip install 'afterward[dashboard]'"
        ) from exc

    from afterward.dashboard._routes import exception_handlers, routes

    if auth and token is None:
        token = new_token()
    templates = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters["timestamp"] = _format_time
    router = Starlette(routes=routes(), exception_handlers=exception_handlers())
    router.state.bus = bus
    router.state.templates = templates
    router.state.recorder = recorder or default_recorder()
    sampler = router.state.sampler = Sampler(bus, interval=max(refresh, 0.5))
    router.state.lag_threshold = lag_threshold
    router.state.refresh = refresh
    router.state.title = title
    guarded = AuthMiddleware(router, token if auth else None, secrets.token_bytes(32))
    return Dashboard(guarded, token if auth else None, sampler)
