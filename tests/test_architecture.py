"""The import rules of src/dynos, read from the source with ast (nothing is imported).

- api/ reaches dynos only through platform/: no module of it imports dynos.store,
  dynos.manager or dynos.backends (issue 12, item 1). The dashboard (dashboard/), served
  beside the API, is held to the same rule.
- No import cycle among the modules of src/dynos, counting module-level imports only: an
  import under ``if TYPE_CHECKING:`` or inside a function runs later, or never, and cannot
  deadlock the import of a module.
- dynos.manager has no circle even counting its imports under ``if TYPE_CHECKING:``: its
  helpers reach the manager through manager/control.py's protocol (issue 12, item 2).
- A dyno's state changes only through the transition table (core/states.py): no module that
  deals in ``DynoState`` assigns a ``.state`` except in a function that calls
  ``check_transition`` (``DynoRecord.move_to``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "dynos"
FORBIDDEN_IN_API = ("dynos.store", "dynos.manager", "dynos.backends")
THROUGH_PLATFORM = ("dynos.api", "dynos.dashboard")  # the packages FORBIDDEN_IN_API applies to

# There is no module-level cycle today. The circles issue 12 names (store <-> backups) close
# only through imports under TYPE_CHECKING, which do not run: they are for those items to
# remove, and test_no_import_cycles does not count them. router client <-> exchange <-> proxy
# (item 3) is gone, and test_no_router_circle_even_under_type_checking keeps it gone.
# manager <-> watch is gone, and test_no_manager_circle_even_under_type_checking keeps it
# gone. platform <-> addons is gone
# (addons depends on platform.context's Services, not on Platform).
STRICT_PACKAGES = ("dynos.manager",)  # their TYPE_CHECKING imports count as edges too
ROUTER = ("dynos.router",)  # the same, for the router: its modules see proxy.Router through
# router/context.py's protocols and the upstream connection through a generic listener


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(
    tree: ast.Module, name: str, is_package: bool, type_checking: bool = False
) -> Iterator[str]:
    """The modules a module imports when it is imported: the statements at its top level,
    in ``try``/``if`` blocks too, but not under ``if TYPE_CHECKING:`` (unless
    ``type_checking``), and not in functions or classes. ``from a import b`` yields ``a``
    and ``a.b`` (b may be a module)."""
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
                if type_checking or not _is_type_checking(node.test):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    yield from walk(block)
                for handler in node.handlers:
                    yield from walk(handler.body)

    yield from walk(tree.body)


def _in(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def import_graph(strict: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Each dynos module -> the dynos modules it imports at module level (for a module of
    the ``strict`` packages, under TYPE_CHECKING too). Importing ``a.b.c`` imports the
    packages ``a`` and ``a.b`` first, so those count too."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        is_package = path.name == "__init__.py"
        for target in module_level_imports(tree, name, is_package, _in(name, strict)):
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
        if not _in(name, THROUGH_PLATFORM):
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
    assert not offences, "api/ and dashboard/ must go through dynos.platform:\n" + "\n".join(
        offences
    )


def test_no_import_cycles() -> None:
    found = [sorted(c) for c in cycles(import_graph())]
    assert not found, f"import cycles in src/dynos (module-level imports): {found}"


def test_no_manager_circle_even_under_type_checking() -> None:
    found = [
        sorted(c)
        for c in cycles(import_graph(STRICT_PACKAGES))
        if any(_in(m, STRICT_PACKAGES) for m in c)
    ]
    assert not found, (
        f"import circles through {STRICT_PACKAGES}, counting their TYPE_CHECKING imports: "
        f"{found}. The manager's helpers take a manager.control.DynoControl, not the manager."
    )


def test_no_router_circle_even_under_type_checking() -> None:
    found = [sorted(c) for c in cycles(import_graph(ROUTER)) if any(_in(m, ROUTER) for m in c)]
    assert not found, (
        f"import circles through dynos.router, counting its TYPE_CHECKING imports: {found}. "
        "Type against router/context.py's protocols (or answer.ClientSide) instead."
    )


def state_assignments(tree: ast.Module) -> Iterator[int]:
    """The lines that assign an attribute ``.state`` (``x.state = ...``, ``x.state: T =
    ...``, ``setattr(x, "state", ...)``) outside a function that calls
    ``check_transition``."""

    def calls_check(function: ast.AST) -> bool:
        return any(
            isinstance(n, ast.Call)
            and (
                (isinstance(n.func, ast.Name) and n.func.id == "check_transition")
                or (isinstance(n.func, ast.Attribute) and n.func.attr == "check_transition")
            )
            for n in ast.walk(function)
        )

    def is_state(target: ast.expr) -> bool:
        return isinstance(target, ast.Attribute) and target.attr == "state"

    def visit(node: ast.AST, guarded: bool) -> Iterator[int]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            guarded = calls_check(node)
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [t for t in node.targets for t in ast.walk(t)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "state"
        ):
            targets = [ast.Attribute(value=node.args[0], attr="state")]
        if not guarded and any(is_state(t) for t in targets):
            yield getattr(node, "lineno", 0)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, guarded)

    yield from visit(tree, False)


def _deals_in_dyno_states(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.ImportFrom) and n.module == "dynos.core.states" for n in ast.walk(tree)
    ) or any(isinstance(n, ast.Name) and n.id == "DynoState" for n in ast.walk(tree))


def test_a_dyno_state_changes_only_through_the_transition_table() -> None:
    offences = []
    for name, path in modules().items():
        if name == "dynos.core.states":
            continue
        tree = ast.parse(path.read_text(), str(path))
        if not _deals_in_dyno_states(tree):
            continue
        offences += [f"{path.relative_to(SRC)}:{line}" for line in state_assignments(tree)]
    assert not offences, (
        "a dyno's state is assigned past the transition table (use DynoRecord.move_to, "
        "or the manager's change_state):\n" + "\n".join(offences)
    )


# -- the checks check: they find what they are meant to find ---------------------------------


def test_direct_state_assignments_are_found_and_the_checked_move_is_allowed() -> None:
    source = (
        "def idle(record):\n"
        "    record.state = DynoState.IDLE\n"
        "def also(record):\n"
        "    a = record.state = DynoState.UP\n"
        "    setattr(record, 'state', DynoState.DOWN)\n"
        "class Record:\n"
        "    def move_to(self, state):\n"
        "        check_transition(self.state, state)\n"
        "        self.state = state\n"
        "    def read(self):\n"
        "        return self.state\n"
    )
    assert list(state_assignments(ast.parse(source))) == [2, 4, 5]


def test_type_checking_imports_count_for_the_strict_packages() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dynos.c\n"
    tree = ast.parse(source)
    assert "dynos.c" not in set(module_level_imports(tree, "dynos.a", False))
    assert "dynos.c" in set(module_level_imports(tree, "dynos.a", False, type_checking=True))


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


MAX_MODULE_LINES = 400  # issue 12: one module per concept; a longer one holds two


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these by concept: {long}"
