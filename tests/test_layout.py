"""The layering the README's Layout section promises, read from the source: the library never
imports the command line (nor argparse or rich, which only it uses), and no two of tierstore's
modules import each other at import time (a cycle that works in one import order breaks in
another)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# where each package's files lie (pyproject's package-dir)
PACKAGES = {"tierstore": ROOT / "tierstore", "tierstore.loader": ROOT / "loader",
            "tierstore.policies": ROOT / "policies", "tierstore.cli.bench": ROOT / "bench"}
COMMAND_LINE = ("tierstore.cli", "argparse", "rich")


def modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def package_of(name: str, path: Path) -> str:
    """The package relative imports in module ``name`` start from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported(node: ast.Import | ast.ImportFrom, package: str) -> set[str]:
    """The dotted names an import statement in ``package`` names: each module, and for
    ``from X import y`` both ``X`` and ``X.y`` (``y`` may be a module)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join([*parts[:len(parts) - node.level + 1], *([base] if base else [])])
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


def import_time_imports(name: str, path: Path) -> set[str]:
    """The modules ``name`` imports when it is imported: its top-level imports, those in
    top-level ``try``/``if`` blocks included, but not those under ``if TYPE_CHECKING`` nor
    inside functions (run later, once everything is imported)."""
    package = package_of(name, path)
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.update(imported(node, package))
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text()).body)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: {m for m in import_time_imports(name, path) if m in found}
            for name, path in found.items()}


def test_the_library_never_imports_the_command_line() -> None:
    """Outside ``tierstore.cli`` (and the launcher, which imports it inside ``main()``), no
    module imports the command line, argparse or rich, at import time or later."""
    offenders = []
    for name, path in modules().items():
        if name.startswith("tierstore.cli") or name == "tierstore.entry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                offenders += [f"{name} imports {m}" for m in imported(node, package_of(name, path))
                              if any(m == c or m.startswith(c + ".") for c in COMMAND_LINE)]
    assert not offenders


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` of more than one node (Tarjan): a
    module that imports itself, as ``from . import x`` in a package's ``__init__`` may, is
    not a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node] - {node}):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_the_checks_see_what_they_should(graph: dict[str, set[str]]) -> None:
    """The graph holds the real imports (the store its parts, a package's ``__init__`` its
    modules, a relative import resolved), and a cycle is found where there is one."""
    assert "tierstore.store.reads" in graph["tierstore.store"]
    assert "tierstore.catalog.aio" in graph["tierstore.catalog"]
    assert "tierstore.loader.tierloader" in graph["tierstore.loader"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d", "a"}}) == [["a", "b", "c"]]
