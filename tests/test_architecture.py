"""The import rules of src/dynos, read from the source with ast (nothing is imported).

- api/ reaches dynos only through platform/: no module of it imports dynos.store,
  dynos.manager or dynos.backends (issue 12, item 1).
- No import cycle among the modules of src/dynos, counting module-level imports only: an
  import under ``if TYPE_CHECKING:`` or inside a function runs later, or never, and cannot
  deadlock the import of a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "dynos"
FORBIDDEN_IN_API = ("dynos.store", "dynos.manager", "dynos.backends")

# There is no module-level cycle today. The circles issue 12 names (manager <-> watch, item 2;
# router client <-> exchange <-> proxy, item 3; store <-> backups too) close only through
# imports under TYPE_CHECKING, which do not run: they are for those items to remove, and
# this test does not count them. platform <-> addons is gone (addons depends on
# platform.context's Services, not on Platform).


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module, name: str, is_package: bool) -> Iterator[str]:
    """The modules a module imports when it is imported: the statements at its top level,
    in ``try``/``if`` blocks too, but not under ``if TYPE_CHECKING:``, and not in functions
    or classes. ``from a import b`` yields ``a`` and ``a.b`` (b may be a module)."""
    package = name if is_package else name.rpartition(".")[0]

    def walk(body: list[ast.stmt]) -> Iterator[str]:
        for node in body:
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                yield base
                yield from (f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    yield from walk(block)
                for handler in node.handlers:
                    yield from walk(handler.body)

    yield from walk(tree.body)


def import_graph() -> dict[str, set[str]]:
    """Each dynos module -> the dynos modules it imports at module level. Importing
    ``a.b.c`` imports the packages ``a`` and ``a.b`` first, so those count too."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for target in module_level_imports(tree, name, path.name == "__init__.py"):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in known and prefix != name:
                    edges.add(prefix)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_api_imports_nothing_from_store_manager_or_backends() -> None:
    offences = []
    for name, path in modules().items():
        if not name.startswith("dynos.api"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for target in targets:
                if any(target == f or target.startswith(f + ".") for f in FORBIDDEN_IN_API):
                    offences.append(f"{path.relative_to(SRC)}:{node.lineno} imports {target}")
                    break
    assert not offences, "api/ must go through dynos.platform:\n" + "\n".join(offences)


def test_no_import_cycles() -> None:
    found = [sorted(c) for c in cycles(import_graph())]
    assert not found, f"import cycles in src/dynos (module-level imports): {found}"


# -- the checks check: they find what they are meant to find ---------------------------------


def test_a_cycle_is_found_and_type_checking_imports_are_not_edges() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import dynos.b\n"
        "if TYPE_CHECKING:\n"
        "    from dynos.c import C\n"
        "def later() -> None:\n"
        "    import dynos.d\n"
    )
    imported = set(module_level_imports(ast.parse(source), "dynos.a", False))
    assert "dynos.b" in imported
    assert not {"dynos.c", "dynos.c.C", "dynos.d"} & imported
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]


def test_relative_imports_resolve_against_the_package() -> None:
    tree = ast.parse("from . import shapes\nfrom ..errors import NotFound\n")
    imported = set(module_level_imports(tree, "dynos.api.routes", False))
    assert {"dynos.api.shapes", "dynos.errors"} <= imported
