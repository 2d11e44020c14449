"""Leadflow's modules and packages import each other in one direction only: no import cycles.

A cycle is how layers rot: once ``qualification`` imports ``leads`` and ``leads`` imports
``qualification``, neither can be read, tested or moved alone. The graph is read from the source
with ``ast`` (imports inside functions count too: a lazy import hides a cycle, it does not remove it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("leadflow", "ingest_api", "reports_api", "sensors", "assets", "pipelines", "bench")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: Iterable[str] = ()
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def module_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    graph = {module_name(p): imported(p, known) for p in files}
    for name, targets in graph.items():
        # A module importing its own package's __init__ is Python's own mechanics, not a dependency.
        targets -= {name.rpartition(".")[0]} | {name}
    return graph


# One Dagster code location: its assets use the resources and its sensors the jobs that pipelines/
# defines, and pipelines/ assembles them all. Between their modules there is still no cycle.
CODE_LOCATION = {"assets", "sensors", "pipelines"}


def layer(module: str) -> str:
    """The unit whose imports must point one way: ``leadflow.<subpackage or module>``, else the top package."""
    parts = module.split(".")
    if parts[0] in CODE_LOCATION:
        return "code location"
    return ".".join(parts[:2]) if parts[0] == "leadflow" and len(parts) > 1 else parts[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    assert cycles(module_graph()) == []


def test_no_two_packages_import_each_other() -> None:
    layers: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        layers.setdefault(layer(module), set()).update(layer(t) for t in targets if layer(t) != layer(module))
    assert cycles(layers) == []


def test_the_checker_sees_a_cycle_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("leadflow.leads.store") == "leadflow.leads" and layer("reports_api.app") == "reports_api"
    assert layer("assets.leads") == layer("pipelines.resources")
