"""Who may see the dashboard: a token on every request, CSRF tokens on every action.

- The token comes as ``Authorization: Bearer <token>``, as the ``afterward_token``
  cookie, or once as ``?token=<token>``: the dashboard then sets the cookie (HttpOnly,
  SameSite=Strict) and redirects to the same URL without the token, so it does not stay
  in the address bar, the history or a ``Referer``.
- With authentication off (loopback only), requests must name a loopback host, which
  defeats DNS rebinding.
- Actions are POSTs carrying a CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``), an HMAC of the session's token, so another site cannot make a
  logged-in browser retry or discard anything. Requests authenticated by a bearer
  header cannot be forged by a browser and need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["COOKIE", "AuthMiddleware", "csrf_token", "is_loopback", "new_token"]

COOKIE = "afterward_token"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(headers: dict[bytes, bytes]) -> str:
    host = headers.get(b"host", b"").decode("latin-1")
    if host.startswith("["):  # [::1]:8765
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def new_token() -> str:
    """A fresh random access token (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, session: str) -> str:
    """The CSRF token of a session: an HMAC of its access token under the app's secret."""
    return hmac.new(secret, session.encode(), hashlib.sha256).hexdigest()


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _cookie(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header is the client's problem: no cookie
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


class AuthMiddleware:
    """Refuse every request without the token; check CSRF on every unsafe method.

    Args:
        app: the dashboard's router.
        token: the access token, or ``None`` for no authentication (loopback only:
            the caller checks).
        secret: the key CSRF tokens are derived with.
    """

    def __init__(self, app: ASGIApp, token: str | None, secret: bytes) -> None:
        self.app = app
        self.token = token
        self.secret = secret

    def _matches(self, candidate: str | None) -> bool:
        return (
            self.token is not None
            and candidate is not None
            and hmac.compare_digest(candidate.encode(), self.token.encode())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = next((v for k, v in query if k == "token"), None)
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        bearer = authorization[7:] if authorization[:7].lower() == "bearer " else None
        if self.token is None:
            # Without a token, only loopback names are served: a web page whose DNS
            # name was rebound to 127.0.0.1 sends its own Host and is refused.
            if not is_loopback(_host_name(headers)):
                await _deny(send, 403, "Without a token, only localhost may be used.")
                return
            session, via_bearer = "no-auth", False
        elif self._matches(bearer):
            session, via_bearer = self.token, True
        elif self._matches(from_query):
            await self._set_cookie_and_redirect(scope, query, send)
            return
        elif self._matches(_cookie(headers)):
            session, via_bearer = self.token, False
        else:
            await _deny(send, 401, "A token is required: open the URL printed at start.")
            return
        scope.setdefault("state", {})
        scope["state"]["csrf"] = csrf_token(self.secret, session)
        scope["state"]["csrf_exempt"] = via_bearer
        await self.app(scope, receive, _with_headers(send))

    async def _set_cookie_and_redirect(
        self, scope: Scope, query: list[tuple[str, str]], send: Send
    ) -> None:
        root = scope.get("root_path", "") or ""
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        # Starlette keeps the full path in "path" and the mount point in "root_path";
        # "//host" would be a redirect to another site: keep it one path.
        location = "/" + scope["path"].lstrip("/") + (f"?{rest}" if rest else "")
        cookie = f"{COOKIE}={self.token}; Path={root or '/'}; HttpOnly; SameSite=Strict"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"set-cookie", cookie.encode("latin-1")),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return wrapped


async def _deny(send: Send, status: int, text: str) -> None:
    body = (
        "<!doctype html><meta charset=utf-8><title>afterward: forbidden</title>"
        f"<h1>{status}</h1><p>{text}</p>"
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"www-authenticate", b'Bearer realm="afterward"'),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
