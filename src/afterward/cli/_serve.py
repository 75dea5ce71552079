"""Binding the listening socket before printing URLs, so a busy port is one clear line."""

from __future__ import annotations

import errno
import socket

from afterward.cli._output import CliError, one_line

__all__ = ["bind", "url_of"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port), for uvicorn.

    Raises:
        CliError: the address is in use or cannot be bound; one line.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CliError(f"cannot serve on {host}:{port}: {one_line(exc)}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else one_line(exc)
        raise CliError(f"cannot serve on {host}:{port}: {reason} (try --port)") from exc
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    """``http://host:port`` of a bound socket (the real port when 0 was asked)."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
