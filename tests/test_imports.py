"""The structure drawn from imports: no cycles, and arrows only point down.

agents <- orchestrator <- evals <- the `fanout` face (``fanout/__init__.py``, ``fanout/cli.py``):
nothing below imports what stands above it. Every import statement counts, including those inside
functions and under ``TYPE_CHECKING``: a lazy import is still an arrow between two concepts.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = {"agents": 0, "orchestrator": 1, "evals": 2}
FACE = 3  # fanout/__init__.py, fanout/cli.py, fanout/__main__.py


def package_dirs() -> dict[str, Path]:
    """Import name -> folder, as pyproject.toml maps them (``[tool.setuptools.package-dir]``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in config["package-dir"].items()}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is_package), for every module under the mapped package folders."""
    found: dict[str, tuple[Path, bool]] = {}
    for package, folder in package_dirs().items():
        # fanout/ maps only its own files; its subpackages are the other mapped folders
        paths = folder.glob("*.py") if package == "fanout" else folder.rglob("*.py")
        for path in paths:
            parts = [*package.split("."), *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the fanout modules it imports (a package's ``__init__`` counts as the package)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                for alias in node.names:  # `from pkg import module` imports the module
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in modules else source)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], FACE) if len(parts) > 1 else FACE


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_covers_every_package() -> None:
    graph = import_graph()
    assert {"fanout", "fanout.cli", "fanout.agents.backend", "fanout.evals.bench.run"} <= set(graph)
    assert "fanout.orchestrator.coordinator" in graph["fanout.cli"]


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(import_graph()) == []


@pytest.mark.parametrize("layer", ["agents", "orchestrator", "evals"])
def test_imports_only_point_down(layer: str) -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if module.startswith(f"fanout.{layer}")
        for target in targets
        if _layer(target) > LAYERS[layer]
    )
    assert upward == []


def test_the_checks_catch_what_they_look_for() -> None:
    """The cycle finder and the layer rule fire on a graph that breaks them."""
    broken = {
        "fanout.agents.a": {"fanout.orchestrator.b"},
        "fanout.orchestrator.b": {"fanout.agents.a"},
        "fanout.evals.c": set(),
    }
    assert _cycles(broken) == [["fanout.agents.a", "fanout.orchestrator.b"]]
    assert _layer("fanout.orchestrator.b") > _layer("fanout.agents.a")
    assert _layer("fanout.cli") == FACE
