"""Every page and action needs the token; actions need the CSRF token; output is escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from afterward.dashboard import create_app
from afterward.dashboard._auth import is_loopback
from afterward.dashboard._routes import routes
from tests.dashboard.conftest import Shop
from tests.support import serve_asgi

TOKEN = "s3cret-token-for-tests"


@contextmanager
def served_client(app: Any) -> Iterator[httpx.Client]:
    """A real uvicorn serving ``app`` on loopback, and an HTTP client for it."""
    with serve_asgi(app) as url, httpx.Client(base_url=url, follow_redirects=True) as client:
        yield client


def _paths(letter_id: str) -> list[tuple[str, str]]:
    """(method, path) for every route, with real IDs filled in."""
    values = {"id": letter_id, "action": "retry", "cid": "x", "name": "app.js"}
    result = []
    for route in routes():
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], route.path)
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                result.append((method, path))
    return result


def test_every_route_refuses_a_request_without_the_token(shop: Shop) -> None:
    letter = shop.bus.dead_letters()[0]
    with served_client(create_app(shop.bus, token=TOKEN)) as client:
        paths = _paths(letter.id)
        assert len(paths) >= 12
        for method, path in paths:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Cookie": "afterward_token=no"},
            ):
                response = client.request(method, path, headers=headers, follow_redirects=False)
                assert response.status_code == 401, (method, path, headers)
                assert "ORD-1" not in response.text
    assert len(shop.bus.dead_letters()) == 1  # nothing was retried or discarded


def test_token_in_query_sets_a_strict_cookie_and_leaves_the_url(shop: Shop) -> None:
    with served_client(create_app(shop.bus, token=TOKEN)) as client:
        response = client.get(
            f"/dead-letters?group=notification&token={TOKEN}", follow_redirects=False
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/dead-letters?group=notification"
        cookie = response.headers["set-cookie"]
        assert f"afterward_token={TOKEN}" in cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = client.get("/dead-letters?group=notification")  # the cookie now
        assert page.status_code == 200
        assert "mail provider unavailable" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]


def test_actions_need_the_csrf_token(shop: Shop) -> None:
    letter = shop.bus.dead_letters()[0]
    with served_client(create_app(shop.bus, token=TOKEN)) as client:
        client.cookies.set("afterward_token", TOKEN)
        page = client.get("/dead-letters").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf
        refused = client.post(f"/dead-letters/{letter.id}/discard", data={"csrf": "0" * 64})
        assert refused.status_code == 403
        assert client.post(f"/dead-letters/{letter.id}/discard").status_code == 403
        assert len(shop.bus.dead_letters()) == 1
        shop.broken = False
        done = client.post(f"/dead-letters/{letter.id}/retry", data={"csrf": csrf.group(1)})
        assert done.status_code == 200 and "retried: handled" in done.text
    assert shop.bus.dead_letters() == [] and shop.sent == ["ORD-1"]


def test_bearer_clients_need_no_csrf_and_unknown_ids_are_404(shop: Shop) -> None:
    letter = shop.bus.dead_letters()[0]
    with served_client(create_app(shop.bus, token=TOKEN)) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/dead-letters/nope", headers=auth).status_code == 404
        assert client.post("/dead-letters/nope/discard", headers=auth).status_code == 404
        bad_action = client.post(f"/dead-letters/{letter.id}/explode", headers=auth)
        assert bad_action.status_code == 403
        gone = client.post(f"/dead-letters/{letter.id}/discard", headers=auth)
        assert gone.status_code == 200 and "discarded" in gone.text
    assert shop.bus.dead_letters() == []


def test_event_data_is_html_escaped(shop: Shop) -> None:
    letter = shop.bus.dead_letters()[0]
    with served_client(create_app(shop.bus, token=TOKEN)) as client:
        page = client.get(
            f"/dead-letters/{letter.id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text


def test_a_generated_token_and_no_auth() -> None:
    from afterward.events import EventBus

    bus = EventBus("memory://")
    generated = create_app(bus)
    assert generated.token and len(generated.token) >= 30
    with served_client(create_app(bus, auth=False)) as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
        # DNS rebinding: a page on evil.example resolved to 127.0.0.1 is refused.
        assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 403


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_bulk_post_without_a_known_action_changes_nothing(shop: Shop) -> None:
    with served_client(create_app(shop.bus, token=TOKEN)) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for form in ({}, {"action": "explode"}):
            refused = client.post("/dead-letters/bulk", data=form, headers=auth)
            assert refused.status_code == 403, form
            assert client.post("/failed-jobs/bulk", data=form, headers=auth).status_code == 403
    assert len(shop.bus.dead_letters()) == 1  # not discarded by default


def test_a_correlation_id_with_a_slash_and_markup_has_its_flow(shop: Shop) -> None:
    from urllib.parse import quote

    from afterward import correlate

    cid = "tenant/7<script>alert(1)</script>"
    with correlate(cid):
        shop.bus.publish_sync("order.completed", {"order_id": "ORD-2"}, key="ORD-2")
    shop.bus.drain_sync()
    with served_client(create_app(shop.bus, token=TOKEN)) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        listed = client.get("/dead-letters", headers=auth).text
        link = re.search(r'href="(/flows/tenant[^"]+)"', listed)
        assert link, listed
        for path in (link[1], f"/flows/{quote(cid, safe='')}", f"/flows?cid={quote(cid)}"):
            page = client.get(path, headers=auth)
            assert page.status_code == 200, path
            assert "<script>alert(1)" not in page.text
            assert "tenant/7&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
            assert "dead letter in notification" in page.text
