"""``--health-port``: ``/healthz``, ``/readyz`` and ``/metrics`` for ``afterward worker``
and ``afterward consume``, for container orchestrators and Prometheus.

The server runs on the command's own event loop, so ``/healthz`` is answered by the loop
that runs the jobs or handlers: a loop blocked by a handler that never awaits fails the
probe (a timeout), which is what a liveness probe is for. ``/readyz`` makes one cheap
backend round trip (cached for a second, bounded to two) and answers 503 while the bus
cannot be reached. ``/metrics`` serves the Prometheus metrics (:mod:`afterward.integrations
.prometheus`'s names) without needing prometheus-client.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from afterward.cli._output import one_line
from afterward.cli._serve import bind
from afterward.events import EventBus
from afterward.integrations._metrics import CONTENT_TYPE, GaugeCache, render, snapshot

__all__ = ["Probes", "probe_options"]

F = TypeVar("F", bound=Callable[..., Any])

_LINE_SECONDS = 5.0
_MAX_HEADER_LINES = 100


def probe_options(command: F) -> F:
    """``--health-port`` and ``--health-host``."""
    command = click.option(
        "--health-host",
        default="127.0.0.1",
        show_default=True,
        help="Interface of the health server (0.0.0.0 for a probe from outside the host).",
    )(command)
    return click.option(
        "--health-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve /healthz, /readyz and /metrics on this port (0: any free port).",
    )(command)


class Probes:
    """The health server of one command (see the module docstring).

    Args:
        bus: the command's bus.
        ready: one cheap round trip to the bus; raising (or taking over ``timeout``)
            means not ready.
        host: the interface.
        port: the port (0: any free one).
        ttl: seconds a readiness answer is reused.
        timeout: seconds a readiness check may take.

    Raises:
        CliError: the port cannot be bound (one line).
    """

    def __init__(
        self,
        bus: EventBus,
        ready: Callable[[], Awaitable[object]],
        host: str,
        port: int,
        *,
        ttl: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        self._ready = ready
        self._ttl = ttl
        self._timeout = timeout
        self._checked_at = float("-inf")
        self._answer = (503, "not checked yet")
        self._gauges = GaugeCache(bus)
        self.socket: socket.socket = bind(host, port)

    @property
    def port(self) -> int:
        """The port served (the real one when 0 was asked)."""
        return int(self.socket.getsockname()[1])

    def start(self) -> asyncio.Task[None]:
        """Serve on the running loop until the task is cancelled (no await needed)."""
        return asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, sock=self.socket)
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_LINE_SECONDS):
                request = await reader.readline()
                for _ in range(_MAX_HEADER_LINES):
                    if (await reader.readline()).strip() == b"":
                        break
            parts = request.split()
            path = parts[1].split(b"?")[0] if len(parts) > 1 else b""
            status, body, kind = await self._route(path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass  # a client that went away or never finished its request
        finally:
            writer.close()

    async def _route(self, path: bytes) -> tuple[int, bytes, str]:
        if path == b"/healthz":
            return 200, b"ok\n", "text/plain"
        if path == b"/readyz":
            status, text = await self._readiness()
            return status, text.encode() + b"\n", "text/plain"
        if path == b"/metrics":
            reading = await self._gauges.refresh()
            text = await asyncio.to_thread(lambda: render(snapshot(reading)))
            return 200, text.encode(), CONTENT_TYPE
        return 404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain"

    async def _readiness(self) -> tuple[int, str]:
        if time.monotonic() - self._checked_at < self._ttl:
            return self._answer
        try:
            async with asyncio.timeout(self._timeout):
                await self._ready()
            answer = (200, "ready")
        except TimeoutError:
            answer = (503, f"not ready: the bus did not answer within {self._timeout:g} s")
        except Exception as exc:
            answer = (503, f"not ready: {one_line(exc)}")
        self._answer, self._checked_at = answer, time.monotonic()
        return answer


_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}
