"""The ``afterward_http`` fixture: every request faked, stray requests prevented.

httpx is imported only when the fixture is used, so the plugin loads without the
``http`` extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from afterward.defer import _current_scope

if TYPE_CHECKING:
    from afterward.http import Fake

__all__ = ["afterward_http"]


@pytest.fixture
def afterward_http() -> Iterator[Fake]:
    """An active ``http.fake()`` preventing stray requests, for the whole test.

    Add canned responses with ``afterward_http.stub({...})`` (or nest
    ``http.fake({...})`` in the test). At the end of the test, work deferred in an open
    ``afterward_scope`` (deferred batches included) is run while the fake is still
    active, and the test fails if any request matched no pattern, even one made by a
    deferred batch whose results nobody looked at (clear ``stray_requests`` if the
    test expects them).

    Example:
        >>> def test_checkout(afterward_http, afterward_scope, client):
        ...     afterward_http.stub({"https://pay.test/*": http.response({"ok": True})})
        ...     client.post("/checkout")
        ...     afterward_scope.run_now()
        ...     afterward_http.assert_sent(lambda r: r.url.host == "pay.test")
    """
    from afterward import http

    fake = http.fake().prevent_stray_requests()
    try:
        yield fake
        current = _current_scope.get()
        if current is not None:
            current.run_now()  # deferred batches must meet the fake, not the network
    finally:
        fake.stop()
    if fake.stray_requests:
        sent = ", ".join(f"{r.method} {r.url}" for r in fake.stray_requests)
        pytest.fail(f"afterward_http: request(s) matched no fake: {sent}", pytrace=False)
