"""The schema registry in the backend: versions, compatibility modes, sharing between
buses and processes (API.md section 5, "Schema registry")."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from afterward import ConfigError, SchemaError
from afterward.events import EventBus
from afterward.events import _schema as schema_module
from afterward.events._compat import incompatibilities
from tests.events.backends import BACKENDS, BackendFactory

ORDER = {
    "type": "object",
    "properties": {"order_id": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["order_id"],
}
SHARED = [(name, factory) for name, factory in BACKENDS if name != "memory"]


@pytest.fixture(params=[f for _, f in SHARED], ids=[n for n, _ in SHARED])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    factory: BackendFactory = request.param
    return factory(tmp_path)


def test_versions_are_stored_once_per_change(bus_url: str) -> None:
    bus = EventBus(bus_url)
    first = bus.schema("orders", ORDER)
    again = bus.schema("orders", dict(ORDER))  # the same schema: no new version
    assert (first.version, again.version) == (1, 1)
    looser = {**ORDER, "properties": {**ORDER["properties"], "total": {"type": "number"}}}
    assert bus.schema("orders", looser).version == 2
    assert [s.version for s in bus.schemas("orders")] == [1, 2]
    assert [s.topic for s in bus.schemas()] == ["orders", "orders"]
    assert bus.schemas("nothing") == []


def test_an_incompatible_version_is_refused_and_nothing_stored(bus_url: str) -> None:
    bus = EventBus(bus_url)
    bus.schema("orders", ORDER)
    stricter = {**ORDER, "required": ["order_id", "note"]}
    with pytest.raises(SchemaError, match="field 'note' is newly required") as info:
        bus.schema("orders", stricter)
    assert info.value.topic == "orders"
    assert len(bus.schemas("orders")) == 1
    assert bus.schema("orders", stricter, compatibility="forward").version == 2
    with pytest.raises(ConfigError, match="compatibility"):
        bus.schema("orders", ORDER, compatibility="sideways")


def test_another_bus_on_the_same_backend_enforces_the_schema(
    bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = EventBus(bus_url), EventBus(bus_url)
    reader.publish_sync("orders", {"anything": True})  # no schema yet: accepted, cached
    writer.schema("orders", ORDER)
    monkeypatch.setattr(schema_module, "CACHE_SECONDS", 0.0)  # the cache's age is the point
    with pytest.raises(SchemaError, match="order_id"):
        reader.publish_sync("orders", {"order_id": "seven"})
    reader.publish_sync("orders", {"order_id": 7})


def test_another_process_is_checked_and_refused(shared_url: str) -> None:
    EventBus(shared_url).schema("orders", ORDER)
    code = textwrap.dedent(
        f"""
        import sys
        from afterward import SchemaError
        from afterward.events import EventBus
        bus = EventBus({shared_url!r})
        try:
            bus.publish_sync("orders", {{"order_id": "seven"}})
        except SchemaError as exc:
            print("refused:", exc)
        try:
            as_text = {{"order_id": {{"type": "string"}}}}
            bus.schema("orders", {{"type": "object", "properties": as_text}})
        except SchemaError as exc:
            print("incompatible:", exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refused:") and "order_id" in lines[0]
    assert lines[1].startswith("incompatible:") and "field 'order_id' changed type" in lines[1]
    assert [s.version for s in EventBus(shared_url).schemas("orders")] == [1]


@pytest.mark.parametrize(
    ("old", "new", "mode", "expected"),
    [
        (ORDER, {**ORDER, "required": ["order_id", "note"]}, "backward", ["'note' is newly"]),
        (ORDER, {**ORDER, "required": []}, "backward", []),
        (ORDER, {**ORDER, "required": []}, "forward", ["'order_id' is no longer required"]),
        (ORDER, {**ORDER, "required": []}, "full", ["'order_id' is no longer required"]),
        (ORDER, {**ORDER, "required": ["order_id", "note"]}, "none", []),
        (
            {"type": "object", "properties": {"n": {"type": "integer"}}},
            {"type": "object", "properties": {"n": {"type": "number"}}},
            "backward",
            [],  # every integer is a number
        ),
        (
            {"type": "object", "properties": {"n": {"type": "number"}}},
            {"type": "object", "properties": {"n": {"type": "integer"}}},
            "backward",
            ["'n' changed type from ['number'] to ['integer']"],
        ),
        (
            {"type": "object", "properties": {"s": {"enum": ["a", "b"]}}},
            {"type": "object", "properties": {"s": {"enum": ["a"]}}},
            "backward",
            ["'s' no longer accepts values ['b']"],
        ),
        (
            {
                "type": "object",
                "properties": {
                    "customer": {
                        "type": "object",
                        "properties": {"email": {"type": "string"}},
                    },
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
                    },
                },
            },
            {
                "type": "object",
                "properties": {
                    "customer": {
                        "type": "object",
                        "properties": {"email": {"type": "string"}},
                        "required": ["email"],
                    },
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"sku": {"type": "integer"}}},
                    },
                },
            },
            "backward",
            ["'customer.email' is newly required", "'items[].sku' changed type"],
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {}, "additionalProperties": False},
            "backward",
            ["'a' is no longer allowed"],
        ),
    ],
)
def test_compatibility_modes_name_the_field(
    old: dict[str, object], new: dict[str, object], mode: str, expected: list[str]
) -> None:
    found = incompatibilities(old, new, mode)
    assert len(found) == len(expected), found
    for problem, words in zip(found, expected, strict=True):
        assert words in problem
