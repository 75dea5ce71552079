"""Real servers for the tests: uvicorn and waitress on loopback, PostgreSQL and Redis.

A missing service is started from PATH when possible; otherwise the test is skipped
with a loud reason, or fails when AFTERWARD_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

REQUIRE_SERVICES = os.environ.get("AFTERWARD_REQUIRE_SERVICES") == "1"


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.005
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` no longer exists (killed *and* reaped: no zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


_START_COMMANDS = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": (
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
    ),
}


def require_service(name: str, port: int) -> None:
    """Make sure ``name`` listens on 127.0.0.1:``port``, starting it if we can."""
    if port_open("127.0.0.1", port):
        return
    command = _START_COMMANDS.get(name)
    binary = command.split()[0] if command else None
    if command and binary and shutil.which(binary):
        subprocess.run(command, shell=True, check=False, capture_output=True)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: port_open("127.0.0.1", port), timeout=15)
            return
    message = (
        f"{name} is not running on 127.0.0.1:{port} and could not be started from PATH "
        f"({command or 'no start command known'}); these tests need it"
    )
    if REQUIRE_SERVICES:
        pytest.fail(message + " (AFTERWARD_REQUIRE_SERVICES=1)")
    pytest.skip("SERVICE MISSING: " + message)


def require_binary(name: str, package: str) -> str:
    """The path of the program ``name`` (Debian package ``package``, which
    ``scripts/install`` installs); skipped loudly when missing, failed in CI."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not on PATH (apt-get install {package}; scripts/install does)"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (AFTERWARD_REQUIRE_SERVICES=1)")
    pytest.skip("SERVICE MISSING: " + message)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_asgi(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 (free port); yield its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def serve_wsgi(app: Any, threads: int = 4) -> Iterator[str]:
    """Serve ``app`` with a real waitress on 127.0.0.1 (free port); yield its base URL."""
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def close_everything() -> None:  # runs on the server's own loop thread
        for channel in list(server._map.values()):
            channel.close()

    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Closing from this thread races with waitress's loop; ask the loop to do it.
        server.trigger.pull_trigger(close_everything)
        thread.join(timeout=15)
        server.task_dispatcher.shutdown()
