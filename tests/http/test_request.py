"""Single requests: PendingRequest, configure, correlation IDs, sync twins, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

import afterward
from afterward import ConfigError, InvalidRequestError, http
from tests.http.conftest import Server


def tag() -> str:
    return uuid.uuid4().hex[:12]


async def test_a_pending_request_is_lazy_and_awaitable(server: Server) -> None:
    t = tag()
    request = http.get(f"{server.url}/echo", params={"tag": t, "x": "1"})
    assert isinstance(request, http.PendingRequest)
    assert server.state.ports[t] == set()  # nothing sent yet
    response = await request
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.json()["query"] == {"tag": t, "x": "1"}
    second = await request  # a description: it can be sent again
    assert second.json()["method"] == "GET"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
async def test_every_method_helper_sends_its_method(server: Server, method: str) -> None:
    response = await getattr(http, method)(f"{server.url}/echo")
    assert response.json()["method"] == method.upper()


async def test_body_and_header_arguments_reach_the_server(server: Server) -> None:
    response = await http.request(
        "post", f"{server.url}/echo", json={"a": 1}, headers={"X-Custom": "yes"}
    )
    body = response.json()
    assert body["body"] == '{"a":1}'
    assert body["headers"]["x-custom"] == "yes"


async def test_head_has_no_body(server: Server) -> None:
    response = await http.head(f"{server.url}/delay/0")
    assert response.status_code == 200
    assert response.content == b""


async def test_the_correlation_id_reaches_the_server(server: Server) -> None:
    t = tag()
    with afterward.correlate("order-42"):
        await http.get(f"{server.url}/echo", params={"tag": t})
        await http.get(
            f"{server.url}/echo", params={"tag": t}, headers={"X-Correlation-ID": "mine"}
        )
    await http.get(f"{server.url}/echo", params={"tag": t})  # none bound: none sent
    assert server.state.correlation_ids[t] == ["order-42", "mine", None]


async def test_configure_sets_base_url_timeout_and_headers(server: Server) -> None:
    http.configure(base_url=f"{server.url}/echo", headers={"X-App": "shop", "X-Env": "test"})
    body = (await http.get("orders/7", headers={"X-Env": "override"})).json()
    assert body["path"] == "/echo/orders/7"
    assert body["headers"]["x-app"] == "shop"
    assert body["headers"]["x-env"] == "override"
    absolute = (await http.get(f"{server.url}/echo")).json()
    assert absolute["path"] == "/echo"

    http.configure(timeout=0.2)
    with pytest.raises(httpx.TimeoutException):
        await http.get(f"{server.url}/hang")
    http.configure(timeout=None, base_url=None, headers=None)
    assert (await http.get(f"{server.url}/echo")).json()["headers"].get("x-app") is None


async def test_configure_uses_the_users_own_client(server: Server) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"mocked": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        http.configure(client=client)
        with afterward.correlate("abc"):
            response = await http.post("https://api.test/x", json={})
    assert response.status_code == 201
    assert seen[0].headers["x-correlation-id"] == "abc"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": 5},
        {"timeout": "3"},
        {"timeout": True},
        {"timeout": -1},
        {"timeout": float("nan")},
        {"headers": ["X-A"]},
        {"client": object()},
    ],
)
def test_configure_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        http.configure(**kwargs)  # type: ignore[arg-type]


def test_bad_method_url_and_arguments_are_refused_at_once() -> None:
    with pytest.raises(ConfigError, match="unknown HTTP method 'FETCH'"):
        http.request("FETCH", "https://x.test/")
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        http.request("", "https://x.test/")
    with pytest.raises(InvalidRequestError, match="URL"):
        http.get(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown request argument"):
        http.get("https://x.test/", jsn={})  # type: ignore[call-arg]


async def test_failures_of_a_single_request_raise_httpx_errors(server: Server) -> None:
    assert (await http.get(f"{server.url}/status/500")).status_code == 500  # not raised
    with pytest.raises(httpx.TimeoutException):
        await http.get(f"{server.url}/hang", timeout=0.2)
    with pytest.raises(httpx.TransportError):
        await http.get(f"{server.url}/drop/")
    with pytest.raises(httpx.ConnectError):
        await http.get("http://127.0.0.1:9/")  # nothing listens on the discard port


async def test_one_pooled_client_per_loop_reuses_its_connection(server: Server) -> None:
    t = tag()
    for _ in range(10):
        await http.get(f"{server.url}/echo", params={"tag": t})
    assert len(server.state.ports[t]) == 1


def test_send_sync_from_a_plain_thread(server: Server) -> None:
    t = tag()
    results: list[int] = []

    def work() -> None:
        with afterward.correlate("from-thread"):
            for _ in range(3):
                results.append(
                    http.get(f"{server.url}/echo", params={"tag": t}).send_sync().status_code
                )

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [200] * 6
    assert server.state.correlation_ids[t] == ["from-thread"] * 6
    # One client on the background loop, shared by every thread and call.
    from afterward._loop import background_loop
    from afterward.http._client import _clients

    client = _clients[background_loop()][0]
    http.get(f"{server.url}/echo").send_sync()
    assert _clients[background_loop()][0] is client


async def test_send_sync_from_a_thread_running_its_own_loop(server: Server) -> None:
    # A sync twin called (wrongly but commonly) on a running loop's thread still works:
    # it runs on afterward's background loop, never asyncio.run() on this one.
    response = http.get(f"{server.url}/echo").send_sync()
    assert response.status_code == 200
    assert (await http.get(f"{server.url}/echo")).status_code == 200


def test_import_afterward_does_not_import_httpx_and_from_afterward_import_http_works() -> None:
    code = (
        "import sys, afterward; assert 'httpx' not in sys.modules and 'aiohttp' not in "
        "sys.modules; from afterward import http; assert http.pool and 'httpx' in sys.modules; "
        "import afterward.http as h; assert h is http is afterward.http; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_the_default_client_is_closed_when_its_loop_ends(server: Server) -> None:
    code = (
        "import asyncio, gc\n"
        "from afterward import http\n"
        "async def main():\n"
        f"    return (await http.get('{server.url}/echo')).status_code\n"
        "for _ in range(3): assert asyncio.run(main()) == 200\n"
        "gc.collect(); print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", code], capture_output=True, text=True
    )
    assert out.stdout.strip() == "ok", out.stderr
    assert "Unclosed" not in out.stderr, out.stderr


async def test_default_client_uses_the_aiohttp_transport() -> None:
    from httpx_aiohttp import AiohttpTransport

    from afterward.http._client import current_client

    client = await current_client(faking=False)
    assert isinstance(client._transport, AiohttpTransport)
    assert client is await current_client(faking=False)
    other_loop_client = await asyncio.to_thread(
        lambda: afterward._loop.run_sync(current_client(False))
    )
    assert other_loop_client is not client
