"""The pytest plugin (entry point ``afterward``): fixtures for apps using afterward.

- ``afterward_scope``: a defer scope open for the whole test; deferred work runs when
  the test ends, or at once with ``afterward_scope.run_now()``.
- ``afterward_http``: every ``afterward.http`` request faked, stray requests prevented
  (see :mod:`afterward.testing._http`).
- ``afterward_jobs``: job dispatches recorded instead of run, with
  ``assert_dispatched`` / ``assert_not_dispatched`` / ``run_all``
  (see :mod:`afterward.testing._jobs`).
- ``afterward_bus``: a private ``memory://`` event bus with ``assert_published``
  (see :mod:`afterward.testing._bus`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from afterward.defer import DeferScope
from afterward.testing._bus import afterward_bus
from afterward.testing._http import afterward_http
from afterward.testing._jobs import afterward_jobs

__all__ = ["afterward_bus", "afterward_http", "afterward_jobs", "afterward_scope"]


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
