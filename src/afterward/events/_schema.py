"""Schemas per topic, in the backend: a registry shared by every process on the bus.

``bus.schema(topic, schema, compatibility=...)`` stores a new version when the schema
differs from the latest (the same schema again registers nothing), after checking it
against the latest with the compatibility mode (:mod:`._compat`); an incompatible one
raises :class:`~afterward.SchemaError` naming the field, and nothing is stored.

Every publish is checked against the latest version, read from the backend and cached
for :data:`CACHE_SECONDS` per topic (so a version registered by another process is
enforced here at most that long after). Data is checked by the pydantic model when the
latest version is the one this process registered from a model, else by the stored
JSON Schema (``jsonschema``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from afterward._exceptions import ConfigError, SchemaError
from afterward.events._compat import MODES, incompatibilities
from afterward.events._protocols import SchemaStore
from afterward.events._records import StoredSchema

__all__ = ["CACHE_SECONDS", "SchemaRegistry"]

#: How long a topic's latest schema is trusted before it is read from the backend again.
CACHE_SECONDS = 5.0

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


def _json_validator(topic: str, schema: Mapping[str, Any]) -> Validator:
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
                f"event data for {topic!r} does not match its schema at {where}: {error.message}",
                topic=topic,
            )

    return check_json


def _model_validator(topic: str, model: Any) -> Validator:
    def check_model(data: Any) -> None:
        try:
            model.model_validate(data)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise SchemaError(
                f"event data for {topic!r} does not match {model.__name__}: {exc}",
                topic=topic,
            ) from exc

    return check_model


def _text(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@dataclass(slots=True)
class _Latest:
    version: int  # 0: no schema
    validator: Validator | None
    read_at: float


class SchemaRegistry:
    """The bus's view of the schema registry in its backend (see the module docstring).

    Args:
        store: the backend's schema store.
    """

    def __init__(self, store: SchemaStore | None) -> None:
        self._store = store
        self._latest: dict[str, _Latest] = {}
        #: Validators of versions this process registered from pydantic models.
        self._models: dict[tuple[str, int], Validator] = {}

    def _require(self) -> SchemaStore:
        if self._store is None:
            raise ConfigError("this bus's backend keeps no schema registry")
        return self._store

    async def versions(self, topic: str | None) -> list[StoredSchema]:
        """Every stored version (of ``topic``), by topic then version."""
        return await self._require().schemas(topic)

    async def register(
        self, topic: str, schema: object, compatibility: str, *, force: bool = False
    ) -> StoredSchema:
        """Store ``schema`` as ``topic``'s next version unless it is the latest already.

        Raises:
            ConfigError: not a schema, an invalid JSON Schema, an unknown mode.
            SchemaError: incompatible with the latest version under ``compatibility``
                (unless ``force``); nothing is stored.
        """
        if compatibility not in MODES:
            raise ConfigError(
                f"compatibility must be one of {', '.join(MODES)}, got {compatibility!r}"
            )
        as_json = _json_schema_of(schema)
        _json_validator(topic, as_json)  # refuse an invalid schema before storing it
        store = self._require()
        while True:
            versions = await store.schemas(topic)
            latest = versions[-1] if versions else None
            if latest is not None and latest.schema == _text(as_json):
                stored = latest
                break
            if latest is not None and not force:
                problems = incompatibilities(json.loads(latest.schema), as_json, compatibility)
                if problems:
                    raise SchemaError(
                        f"the new schema for {topic!r} breaks {compatibility} compatibility "
                        f"with version {latest.version}: " + "; ".join(problems),
                        topic=topic,
                    )
            version = 1 if latest is None else latest.version + 1
            stored = StoredSchema(topic, version, _text(as_json), compatibility, datetime.now(UTC))
            if await store.add_schema(stored):
                break  # else another process registered one meanwhile: check against it
        if not isinstance(schema, Mapping):
            self._models[(topic, stored.version)] = _model_validator(topic, schema)
        self._latest.pop(topic, None)
        return stored

    def stale(self, topic: str) -> bool:
        """Whether ``topic``'s latest schema must be read again before a publish."""
        known = self._latest.get(topic)
        return known is None or time.monotonic() - known.read_at > CACHE_SECONDS

    async def refresh(self, topic: str) -> None:
        """Read ``topic``'s latest version from the backend (no store: no schemas)."""
        versions = await self._store.schemas(topic) if self._store is not None else []
        if not versions:
            self._latest[topic] = _Latest(0, None, time.monotonic())
            return
        latest = versions[-1]
        validator = self._models.get((topic, latest.version))
        if validator is None:
            validator = _json_validator(topic, json.loads(latest.schema))
        self._latest[topic] = _Latest(latest.version, validator, time.monotonic())

    def check(self, topic: str, data: Any) -> None:
        """Raise :class:`SchemaError` when ``data`` does not match ``topic``'s latest
        schema as last read (call :meth:`refresh` first when :meth:`stale`)."""
        known = self._latest.get(topic)
        if known is not None and known.validator is not None:
            known.validator(data)
