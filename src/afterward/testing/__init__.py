"""Test helpers for apps that use afterward; the pytest plugin lives in
:mod:`afterward.testing.plugin` and is registered automatically."""

__all__: list[str] = []
