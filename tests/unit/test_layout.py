"""The layout holds: no import cycle, and only task-type packages know task types.

Read from the source with `ast` (nothing is imported): every import statement of the project's
packages, at any depth (an import inside a function to dodge a cycle is still a cycle), except
those under `if TYPE_CHECKING:`, which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tasks.core.plugins import known_task_types

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("crawlers", "flows", "serve", "tasks")
TASK_AGNOSTIC = ("tasks.core", "tasks.clean", "tasks.crawl", "tasks.evaluate", "tasks.export")
TASK_AGNOSTIC += ("tasks.promote", "tasks.train", "tasks.validate", "serve", "flows", "crawlers")
# The one place a task type is named outside its package: registry entries written before task
# types existed carry no "task" and are image classifiers.
LEGACY_DEFAULT = {("tasks.core.registry", "image_classification")}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _runtime_tree(path: Path) -> ast.Module:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    return tree


def _imports(name: str, path: Path) -> set[str]:
    """The project modules that `name` imports (a name imported from a package counts as its
    submodule when one exists)."""
    found = set()
    for node in ast.walk(_runtime_tree(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: relative import; the project uses absolute ones"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    project = set()
    for imported in found:
        module = imported
        while module and module not in MODULES:
            module = module.rpartition(".")[0]
        if module and module != name:
            project.add(module)
    return project


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle_from(start: str) -> list[str] | None:
    """A path start -> ... -> start in the import graph, if there is one (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for imported in GRAPH[module]:
            if imported == start:
                return [*path, start]
            if imported not in seen:
                seen.add(imported)
                stack.append((imported, [*path, imported]))
    return None


def test_the_graph_is_read() -> None:
    # A parser that found nothing would pass the tests below.
    assert "tasks.core.params" in GRAPH["tasks.core.columns"]
    assert "tasks.core.stage" in GRAPH["tasks.train"]
    assert len(MODULES) > 80


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_cycle(module: str) -> None:
    assert _cycle_from(module) is None


def _agnostic(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in TASK_AGNOSTIC)


def test_task_agnostic_code_imports_no_task_type() -> None:
    leaks = {
        module: sorted(m for m in imported if m.startswith("tasks.types"))
        for module, imported in GRAPH.items()
        if _agnostic(module)
    }
    assert {module: found for module, found in leaks.items() if found} == {}


def test_task_agnostic_code_branches_on_no_task_type() -> None:
    """No string constant in code (docstrings and descriptions aside) is a task type's name."""
    names = set(known_task_types())
    assert {"image_classification", "forecasting"} <= names
    found = set()
    for module, path in MODULES.items():
        if not _agnostic(module):
            continue
        tree = _runtime_tree(path)
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and id(node) not in docstrings
                and node.value in names
            ):
                found.add((module, node.value))
    assert found == LEGACY_DEFAULT
