"""The ``afterward`` command line."""

from afterward.cli._main import main

__all__ = ["main"]
