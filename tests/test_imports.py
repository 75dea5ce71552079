"""Imports flow one way: no cycle anywhere in the package (type-level imports included).

The layers themselves are import-linter contracts in pyproject.toml (``lint-imports``,
run by scripts/check); this test catches cycles inside a layer, which layers allow.
"""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Every import ``a -> b`` for which ``b`` also leads back to ``a``, as a cycle."""
    found = set()
    for importer in graph.modules - {"afterward"}:  # the root: the re-export surface
        for imported in graph.find_modules_directly_imported_by(importer) - {"afterward"}:
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.add(tuple(sorted({importer, *back})))
    return sorted(found)


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("afterward", include_external_packages=False)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = grimp.ImportGraph()
    for name in ("afterward", "afterward.a", "afterward.b", "afterward.c"):
        graph.add_module(name)
    graph.add_import(importer="afterward.a", imported="afterward.b")
    graph.add_import(importer="afterward.b", imported="afterward.a")
    graph.add_import(importer="afterward.c", imported="afterward.a")
    assert _cycles(graph) == [("afterward.a", "afterward.b")]
