"""Schema compatibility, as Confluent's Schema Registry defines the modes, for JSON Schema.

- ``backward``: consumers using the new schema can read events written with the old
  one (every event the old schema accepts, the new one accepts).
- ``forward``: consumers still on the old schema can read events written with the new one.
- ``full``: both. ``none``: anything goes.

The check walks object properties (nested objects and array items included) and finds
the usual breaks: a field newly required, a field's type narrowed or changed, enum
values removed, a field refused by ``additionalProperties: false``. Each problem names
the field by its path (``customer.email``, ``items[].sku``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MODES", "incompatibilities"]

MODES = ("backward", "forward", "full", "none")


def _types(node: object) -> frozenset[str]:
    if not isinstance(node, Mapping):
        return frozenset()
    kind = node.get("type")
    if isinstance(kind, str):
        found = {kind}
    elif isinstance(kind, list):
        found = {str(k) for k in kind}
    else:
        found = set()
        for option in node.get("anyOf", ()) or node.get("oneOf", ()):
            found |= _types(option)
    if "integer" in found:
        found.add("integer")
    return frozenset(found)


def _accepts(reader: frozenset[str], writer: frozenset[str]) -> bool:
    """Whether a reader of types ``reader`` accepts every value of types ``writer``
    (an integer is a number)."""
    widened = reader | ({"integer"} if "number" in reader else set())
    return not reader or not writer or writer <= widened


def _name(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


#: How a problem reads when the reader is the new schema (backward) or the old (forward).
_WORDS = {
    "required": (
        "is newly required",
        "is no longer required, but the previous version requires it",
    ),
    "refused": ("is no longer allowed", "is new, but the previous version refuses extra fields"),
    "enum": ("no longer accepts", "now takes, and the previous version refuses,"),
}


def _problems(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str, forward: bool
) -> list[str]:
    """Ways a value valid under ``writer`` may be invalid under ``reader``."""
    found: list[str] = []
    words = {k: v[1] if forward else v[0] for k, v in _WORDS.items()}
    where = f"field {path!r}" if path else "the data itself"
    old, new = (reader, writer) if forward else (writer, reader)
    if not _accepts(_types(reader), _types(writer)):
        found.append(f"{where} changed type from {sorted(_types(old))} to {sorted(_types(new))}")
    if "enum" in reader:
        lost = [v for v in writer.get("enum", []) if v not in reader["enum"]]
        if lost or "enum" not in writer:
            found.append(f"{where} {words['enum']} values {lost or 'outside its enum'!r}")
    writer_props = writer.get("properties") or {}
    reader_props = reader.get("properties") or {}
    if isinstance(writer_props, Mapping) and isinstance(reader_props, Mapping):
        required_before = set(writer.get("required", ()))
        for field in sorted(set(reader.get("required", ())) - required_before):
            found.append(f"field {_name(path, field)!r} {words['required']}")
        if reader.get("additionalProperties") is False:
            for field in sorted(set(writer_props) - set(reader_props)):
                found.append(f"field {_name(path, field)!r} {words['refused']}")
        for field in sorted(set(writer_props) & set(reader_props)):
            before, after = writer_props[field], reader_props[field]
            if isinstance(before, Mapping) and isinstance(after, Mapping):
                found += _problems(after, before, _name(path, field), forward)
    before_items, after_items = writer.get("items"), reader.get("items")
    if isinstance(before_items, Mapping) and isinstance(after_items, Mapping):
        found += _problems(after_items, before_items, f"{path}[]" if path else "[]", forward)
    return found


def incompatibilities(old: Mapping[str, Any], new: Mapping[str, Any], mode: str) -> list[str]:
    """Why ``new`` breaks compatibility ``mode`` with ``old`` (empty: it does not).

    Example:
        >>> old = {"type": "object", "properties": {"a": {"type": "integer"}}}
        >>> incompatibilities(old, {**old, "required": ["a"]}, "backward")
        ["field 'a' is newly required"]
    """
    problems: list[str] = []
    if mode in ("backward", "full"):
        problems += _problems(new, old, "", forward=False)
    if mode in ("forward", "full"):
        problems += _problems(old, new, "", forward=True)
    return problems
