"""Adapters between afterward and web frameworks and database libraries.

Each submodule imports its framework lazily-by-being-imported: importing
``afterward.integrations`` itself imports none of them.
"""

__all__: list[str] = []
