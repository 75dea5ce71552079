"""The Django middleware and atomic-aware defer: test client and a real WSGI server."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")

import django

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402

import afterward  # noqa: E402
from tests.django_project import views  # noqa: E402
from tests.support import serve_wsgi  # noqa: E402


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    views.ran.clear()
    views.seen_ids.clear()
    yield
    afterward.drain_sync(5)


def _after(client: Client, path: str, **headers: str) -> list[str]:
    client.get(path, headers=headers)
    assert afterward.drain_sync(5)
    return list(views.ran)


def test_callbacks_run_after_the_response_with_its_correlation_id() -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/plain", headers={"X-Correlation-ID": "dj-1"})
    assert response["X-Correlation-ID"] == "dj-1"
    assert response.json() == {"cid": "dj-1"}
    assert afterward.drain_sync(5)
    assert views.ran == ["plain"] and views.seen_ids == ["dj-1"]


def test_exception_in_view_runs_only_always_callbacks() -> None:
    client = Client(raise_request_exception=False)
    assert _after(client, "/failing") == ["always"]


def test_atomic_commit_runs_callbacks_and_rolled_back_savepoints_drop_theirs() -> None:
    assert _after(Client(), "/committed") == ["outer", "savepoint-released"]


def test_atomic_rollback_drops_callbacks_unless_opted_out() -> None:
    assert _after(Client(), "/rolled-back") == ["opted-out"]


async def test_async_views_go_through_the_async_middleware_path() -> None:
    response = await AsyncClient().get("/async", headers={"X-Request-ID": "dj-async"})
    assert response.status_code == 200 and response["X-Correlation-ID"] == "dj-async"
    assert await afterward.drain(5)
    assert views.ran == ["async"] and views.seen_ids == ["dj-async"]


def test_real_wsgi_server() -> None:
    with serve_wsgi(get_wsgi_application()) as url:
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        connection.request("GET", "/committed", headers={"X-Correlation-ID": "dj-wsgi"})
        response = connection.getresponse()
        assert response.read() == b"ok"
        assert response.headers["X-Correlation-ID"] == "dj-wsgi"
        connection.close()
        assert afterward.drain_sync(5)
    assert views.ran == ["outer", "savepoint-released"]
    assert views.seen_ids == ["dj-wsgi", "dj-wsgi"]
