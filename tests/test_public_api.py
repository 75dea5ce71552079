"""The export surface: complete, sorted, and importable without optional extras."""

from __future__ import annotations

import subprocess
import sys

import afterward


def test_all_is_sorted_and_complete() -> None:
    assert afterward.__all__ == sorted(afterward.__all__)
    for name in afterward.__all__:
        assert getattr(afterward, name) is not None
    for name in ("defer", "forget", "scope", "correlation_id", "correlate", "stats"):
        assert name in afterward.__all__


def test_every_error_derives_from_the_root() -> None:
    errors = [
        getattr(afterward, n)
        for n in afterward.__all__
        if n.endswith(("Error", "Unavailable", "Timeout"))
    ]
    assert errors
    for error in errors:
        assert issubclass(error, afterward.AfterwardError), error


def test_import_afterward_pulls_no_optional_dependency() -> None:
    optional = [
        "httpx",
        "aiohttp",
        "starlette",
        "django",
        "sqlalchemy",
        "aiokafka",
        "redis",
        "cloudpickle",
        "jsonschema",
        "pydantic",
        "uvicorn",
        "flask",
    ]
    code = f"import sys, afterward; print([m for m in {optional!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
