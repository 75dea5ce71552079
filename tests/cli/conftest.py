"""A SQLite bus file per test, named by AFTERWARD_BUS as the CLI reads it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def bus_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("AFTERWARD_BUS", url)
    return url
