"""http.fake(): patterns, canned and computed responses, assertions, stray requests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

import afterward
from afterward import ConfigError, StrayRequestError, http
from afterward.http._fake import active_fakes


async def test_patterns_match_the_whole_url_with_star_wildcards() -> None:
    routes = {
        "https://pay.test/charge": http.response("exact"),
        "POST https://pay.test/*": http.response("post"),
        "https://pay.test/*": http.response("pay"),
        "shop.test/*/items?page=*": http.response("schemeless"),
        "*": http.response("fallback", 404),
    }
    with http.fake(routes):
        sent = await http.pool(
            [
                http.get("https://pay.test/charge"),
                http.get("https://pay.test/charge?retry=1"),  # query: not exact any more
                http.post("https://pay.test/refund"),
                http.get("http://shop.test/cart/items?page=2"),
                http.get("https://elsewhere.test/"),
            ]
        )
    texts = [r.text for r in sent]  # type: ignore[union-attr]
    assert texts == ["exact", "pay", "post", "schemeless", "fallback"]
    assert sent[4].status_code == 404  # type: ignore[union-attr]


def test_response_bodies() -> None:
    assert http.response({"a": 1}).json() == {"a": 1}
    assert http.response([1, 2], 201).json() == [1, 2]
    assert http.response("hi").text == "hi"
    raw = http.response(b"\x00\x01", headers={"Content-Type": "application/octet-stream"})
    assert raw.content == b"\x00\x01"
    assert raw.headers["content-type"] == "application/octet-stream"
    empty = http.response(status=204)
    assert (empty.status_code, empty.content) == (204, b"")


@pytest.mark.parametrize("status", ["200", 42, 600, True])
def test_response_rejects_bad_status(status: object) -> None:
    with pytest.raises(ConfigError, match=r"http.response\(\) status"):
        http.response(status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [{"ok": True}, "text", [http.response("one"), 200]])
def test_unusable_fake_values_are_refused_when_stubbed(value: object) -> None:
    with pytest.raises(ConfigError, match="unusable fake value"):
        http.fake({"https://a.test/*": value})  # type: ignore[dict-item]
    assert active_fakes() == ()  # nothing was left active


def test_assertions_reject_bad_arguments() -> None:
    with http.fake() as fake:
        with pytest.raises(afterward.InvalidCallbackError, match="assert_sent"):
            fake.assert_sent("/charge")  # type: ignore[arg-type]
        with pytest.raises(afterward.InvalidCallbackError, match="assert_not_sent"):
            fake.assert_not_sent(None)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="assert_sent_count"):
            fake.assert_sent_count("0")  # type: ignore[arg-type]


async def test_callables_sequences_and_exceptions() -> None:
    async def async_echo(request: httpx.Request) -> httpx.Response:
        return http.response({"got": request.content.decode()})

    routes: dict[str, http.FakeValue] = {
        "https://a.test/sync?*": lambda request: http.response(request.url.params["q"]),
        "https://a.test/async": async_echo,
        "https://a.test/seq": [http.response("one"), http.response("two", 500)],
        "https://a.test/down": httpx.ConnectError("refused"),
    }
    with http.fake(routes):
        assert (await http.get("https://a.test/sync", params={"q": "x"})).text == "x"
        assert (await http.post("https://a.test/async", content=b"body")).json() == {"got": "body"}
        results = await http.pool([http.get("https://a.test/seq") for _ in range(3)], concurrency=1)
        with pytest.raises(httpx.ConnectError):
            await http.get("https://a.test/down")
    assert [getattr(r, "text", None) for r in results[:2]] == ["one", "two"]
    assert isinstance(results[2], StrayRequestError)
    assert "exhausted" in str(results[2])


async def test_the_real_pipeline_runs_under_the_fake() -> None:
    http.configure(base_url="https://api.test/v1", headers={"X-App": "shop"})
    with http.fake({"https://api.test/v1/*": http.response({"ok": True})}) as fake:
        with afterward.correlate("cid-fake"):
            await http.post("orders", json={"id": 1}, params={"dry": "1"})
    request = fake.requests[0]
    assert str(request.url) == "https://api.test/v1/orders?dry=1"
    assert request.headers["x-app"] == "shop"
    assert request.headers["x-correlation-id"] == "cid-fake"
    assert request.content == b'{"id":1}'


async def test_the_fake_stands_in_for_a_users_own_client() -> None:
    async with httpx.AsyncClient(base_url="https://own.test/api/") as client:
        http.configure(client=client)
        with http.fake({"https://own.test/api/*": http.response("faked")}) as fake:
            assert (await http.get("ping")).text == "faked"
    assert str(fake.requests[0].url) == "https://own.test/api/ping"


async def test_assertions() -> None:
    with http.fake() as fake:
        assert (await http.post("https://pay.test/charge")).status_code == 200  # default
        await http.get("https://pay.test/status")
    fake.assert_sent(lambda r: r.url.path == "/charge" and r.method == "POST")
    fake.assert_not_sent(lambda r: r.url.host == "evil.test")
    fake.assert_sent_count(2)
    with pytest.raises(AssertionError, match=r"sent: POST https://pay\.test/charge"):
        fake.assert_sent(lambda r: r.method == "DELETE")
    with pytest.raises(AssertionError, match="1 request"):
        fake.assert_not_sent(lambda r: r.method == "GET")
    with pytest.raises(AssertionError, match="expected 3"):
        fake.assert_sent_count(3)


async def test_stray_requests_fail_the_request_not_the_pool() -> None:
    with http.fake({"https://ok.test/*": http.response("ok")}) as fake:
        assert http.prevent_stray_requests() is fake
        results = await http.pool(
            {"ok": http.get("https://ok.test/"), "stray": http.get("https://no.test/")}
        )
        with pytest.raises(StrayRequestError, match=r"GET https://no.test/"):
            await http.get("https://no.test/")
    assert results["ok"].text == "ok"  # type: ignore[union-attr]
    assert isinstance(results["stray"], StrayRequestError)
    assert len(fake.stray_requests) == 2


def test_prevent_stray_requests_needs_a_fake() -> None:
    with pytest.raises(ConfigError, match="needs an active"):
        http.prevent_stray_requests()


async def test_plain_call_fakes_until_stop_and_nested_fakes() -> None:
    outer = http.fake({"*": http.response("outer")})
    assert outer.active
    with http.fake({"https://inner.test/*": http.response("inner")}) as inner:
        assert (await http.get("https://inner.test/x")).text == "inner"
        assert (await http.get("https://other.test/x")).text == "outer"
    assert (await http.get("https://inner.test/x")).text == "outer"
    outer.stop()
    assert not outer.active
    assert len(outer.requests) == 3 and len(inner.requests) == 2


def test_bad_fake_routes_are_refused() -> None:
    with pytest.raises(ConfigError):
        http.fake(["*"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        http.fake({"": http.response()})


def test_a_deferred_batch_keeps_the_fake_it_was_deferred_under() -> None:
    with afterward.scope():
        with http.fake({"*": http.response("faked")}) as fake:
            results: list[object] = []
            http.batch([http.get("https://pay.test/")]).then(lambda b, r: results.extend(r)).defer()
        # the fake ended before the scope closes and runs the batch: still answered by it
    assert [getattr(r, "text", r) for r in results] == ["faked"]
    fake.assert_sent_count(1)


PLUGIN_TESTS = """
import pytest
from afterward import http

CAPTURED = []

def test_fixture_fakes_and_prevents_strays(afterward_http):
    afterward_http.stub({"https://pay.test/*": http.response({"ok": True})})
    assert http.get("https://pay.test/charge").send_sync().json() == {"ok": True}
    assert isinstance(http.pool_sync([http.get("https://x.test/")])[0], Exception)
    afterward_http.stray_requests.clear()   # expected here

@pytest.mark.parametrize("order", ["scope-first", "http-first"])
def test_deferred_batch_is_captured_when_the_scope_closes(order, request):
    names = ["afterward_scope", "afterward_http"]
    if order == "http-first":
        names.reverse()
    for name in names:
        request.getfixturevalue(name)
    fake = request.getfixturevalue("afterward_http")
    fake.stub({"https://crm.test/*": http.response(status=202)})
    http.batch([http.post("https://crm.test/contacts")]).finally_(
        lambda b, results: CAPTURED.append((order, results[0].status_code, len(fake.requests)))
    ).defer()
    assert fake.requests == []   # runs when the test's scope closes

def test_both_deferred_batches_met_the_fake():
    assert CAPTURED == [("scope-first", 202, 1), ("http-first", 202, 1)]

def test_stray_request_in_a_deferred_batch_fails_the_test(afterward_http, afterward_scope):
    http.batch([http.get("https://unmocked.test/")]).defer()
"""


def test_the_afterward_http_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(textwrap.dedent(PLUGIN_TESTS))
    out = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("-o", "asyncio_default_fixture_loop_scope=function", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert "5 passed, 1 error" in out.stdout, out.stdout + out.stderr
    assert "matched no fake: GET https://unmocked.test/" in out.stdout
