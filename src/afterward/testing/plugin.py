"""The pytest plugin (entry point ``afterward``): fixtures for apps using afterward.

- ``afterward_scope``: a defer scope open for the whole test; deferred work runs when
  the test ends, or at once with ``afterward_scope.run_now()``.
- ``afterward_http``: every ``afterward.http`` request faked, stray requests prevented
  (see :mod:`afterward.testing._http`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from afterward.defer import DeferScope
from afterward.testing._http import afterward_http

__all__ = ["afterward_http", "afterward_scope"]


@pytest.fixture
def afterward_scope() -> Iterator[DeferScope]:
    """A defer scope open for the test.

    Example:
        >>> def test_signup_sends_welcome(afterward_scope, client):
        ...     client.post("/signup", json={...})       # code under test calls defer()
        ...     afterward_scope.run_now()                # run what it deferred
        ...     assert outbox == ["welcome"]
    """
    with DeferScope() as defer_scope:
        yield defer_scope
