"""The pytest plugin's afterward_scope fixture, as a user's test suite sees it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_afterward_scope_runs_deferred_work_at_teardown_or_on_demand(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import afterward
        from afterward import defer

        ran = []

        def test_run_now(afterward_scope):
            defer(ran.append, "first")
            assert ran == []
            afterward_scope.run_now()
            assert ran == ["first"]
            defer(ran.append, "at teardown")

        def test_teardown_ran_the_rest():
            assert ran == ["first", "at teardown"]

        async def test_async_tests_see_the_scope(afterward_scope):
            async def later():
                ran.append("async")
            defer(later)
            await afterward_scope.run_now_async()
            assert ran[-1] == "async"

        def test_no_fixture_no_scope():
            import pytest
            with pytest.raises(afterward.NoScopeError):
                defer(print)
        """
    )
    result = pytester.runpytest_subprocess("-p", "asyncio", "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=4)
