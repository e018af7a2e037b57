"""Imports point one way: the process layer and spec at the bottom, servers and suites above, the CLI on top.

Read from the source (the import statements themselves), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A package may import the packages of a lower layer, never one of its own layer or above.
LAYERS: dict[str, int] = {
    "launch": 0,
    "spec": 0,
    "reference_server": 1,  # the server knows nothing of the suite that judges it
    "conformance": 1,  # the suite certifies any endpoint, so it cannot lean on the reference server's code
    "reports": 1,  # renders the typed contracts of spec/, not the internals of their producers
    "perf": 2,  # load tests may judge their samples with the conformance rules
    "llamacert": 3,  # the command, on top of everything
    "benchmarks": 4,  # measurements run from a checkout, over everything; never shipped
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & LAYERS.keys()


def import_graph() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the files that import it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in _imported_packages(path) - {package}:
                graph.setdefault(package, {}).setdefault(imported, set()).add(str(path.relative_to(ROOT)))
    return graph


def test_every_package_is_placed_in_a_layer() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(LAYERS), "add the new package to LAYERS with the layer it belongs to"


def test_imports_point_down_only() -> None:
    upward = [
        f"{sorted(files)} ({package}, layer {LAYERS[package]}) import {imported} (layer {LAYERS[imported]})"
        for package, imports in import_graph().items()
        for imported, files in imports.items()
        if LAYERS[imported] >= LAYERS[package]
    ]
    assert not upward, "\n".join(upward)


def test_the_check_reads_imports_that_exist() -> None:
    # the graph is not vacuous: the CLI does reach the layers below it
    assert {"launch", "spec", "reference_server", "perf", "reports"} <= import_graph()["llamacert"].keys()
