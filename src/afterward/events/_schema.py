"""Schemas per topic: JSON Schema dicts (``jsonschema``) or pydantic model classes.

Data is checked at publish time; re-registering a topic's schema is refused when the new
one would reject events the old one accepted in the two common ways: a field becomes
required, or a field's type changes. ``force=True`` overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from afterward._exceptions import ConfigError, SchemaError

__all__ = ["SchemaRegistry", "incompatibilities"]

Validator = Callable[[Any], None]


def _json_schema_of(schema: object) -> dict[str, Any]:
    if isinstance(schema, Mapping):
        return dict(schema)
    to_schema = getattr(schema, "model_json_schema", None)
    if isinstance(schema, type) and callable(to_schema):
        result: dict[str, Any] = to_schema()
        return result
    raise ConfigError(
        f"a schema must be a JSON Schema dict or a pydantic model class, got {schema!r}"
    )


def _validator_of(topic: str, schema: object) -> Validator:
    if isinstance(schema, Mapping):
        try:
            import jsonschema
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "JSON Schema validation needs jsonschema: pip install 'afterward[events]'"
            ) from exc
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(dict(schema))
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"invalid JSON Schema for {topic!r}: {exc.message}") from exc
        checker = cls(dict(schema))

        def check_json(data: Any) -> None:
            error = jsonschema.exceptions.best_match(checker.iter_errors(data))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                raise SchemaError(
                    f"event data for {topic!r} does not match its schema at {where}: "
                    f"{error.message}",
                    topic=topic,
                )

        return check_json

    model: Any = schema

    def check_model(data: Any) -> None:
        try:
            model.model_validate(data)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise SchemaError(
                f"event data for {topic!r} does not match {model.__name__}: {exc}",
                topic=topic,
            ) from exc

    return check_model


def _types(prop: object) -> frozenset[str]:
    if not isinstance(prop, Mapping):
        return frozenset()
    kind = prop.get("type")
    if isinstance(kind, str):
        return frozenset({kind})
    if isinstance(kind, list):
        return frozenset(str(k) for k in kind)
    found: set[str] = set()
    for option in prop.get("anyOf", ()) or prop.get("oneOf", ()):
        found |= _types(option)
    return frozenset(found)


def incompatibilities(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Ways ``new`` would reject data ``old`` accepted (top-level fields only)."""
    problems = []
    old_required = set(old.get("required", ()))
    for name in sorted(set(new.get("required", ())) - old_required):
        problems.append(f"field {name!r} is newly required")
    old_props = old.get("properties", {}) or {}
    new_props = new.get("properties", {}) or {}
    for name in sorted(set(old_props) & set(new_props)):
        before, after = _types(old_props[name]), _types(new_props[name])
        if before and after and not before <= after:
            problems.append(f"field {name!r} changed type from {sorted(before)} to {sorted(after)}")
    if _types(old) and _types(new) and not _types(old) <= _types(new):
        problems.append("the data's own type changed")
    return problems


class SchemaRegistry:
    """The schemas registered on one bus."""

    def __init__(self) -> None:
        self._schemas: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, Validator] = {}

    def register(self, topic: str, schema: object, *, force: bool = False) -> None:
        """Register ``schema`` for ``topic``; see :meth:`afterward.EventBus.schema`."""
        as_json = _json_schema_of(schema)
        validator = _validator_of(topic, schema)
        previous = self._schemas.get(topic)
        if previous is not None and not force:
            problems = incompatibilities(previous, as_json)
            if problems:
                raise ConfigError(
                    f"new schema for {topic!r} is incompatible with the registered one: "
                    + "; ".join(problems)
                    + " (pass force=True to replace it anyway)"
                )
        self._schemas[topic] = as_json
        self._validators[topic] = validator

    def check(self, topic: str, data: Any) -> None:
        """Raise :class:`SchemaError` when ``data`` does not match ``topic``'s schema."""
        validator = self._validators.get(topic)
        if validator is not None:
            validator(data)
