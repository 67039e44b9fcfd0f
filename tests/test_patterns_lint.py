"""A lint: no regular expression in src ends in "$", so none can let a trailing newline through.

``re.match(r"^[a-z]+$", "app\\n")`` matches: "$" also matches before a final newline. That is
how ``nl-app`` and ``nl-app\\n`` became two apps. Validation uses ``fullmatch`` (or ``\\Z``).
The lint reads every literal pattern handed to the ``re`` module and every ``re.compile``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
RE_FUNCTIONS = {"compile", "match", "search", "fullmatch", "findall", "finditer", "split", "sub"}


def literal_patterns(tree: ast.AST) -> list[tuple[int, str | bytes]]:
    """(line, pattern) of each ``re.<function>("literal", ...)`` call in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if not (isinstance(target, ast.Name) and target.id == "re"):
            continue
        if node.func.attr not in RE_FUNCTIONS or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str | bytes):
            found.append((node.lineno, first.value))
    return found


def ends_in_dollar(pattern: str | bytes) -> bool:
    """True when the pattern's last token is the "$" anchor (not an escaped "\\$")."""
    text = pattern.decode("latin-1") if isinstance(pattern, bytes) else pattern
    stripped = text.rstrip(")")  # "(...$)" ends in the anchor too
    if not stripped.endswith("$"):
        return False
    backslashes = len(stripped[:-1]) - len(stripped[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def test_the_lint_tells_anchors_from_escaped_dollars() -> None:
    assert ends_in_dollar(r"^[a-z]+$") and ends_in_dollar(r"(a|b$)") and ends_in_dollar(b"x$")
    assert not ends_in_dollar(r"costs \$") and not ends_in_dollar(r"[a-z]+")
    assert ends_in_dollar(r"a\\$")  # an escaped backslash, then the anchor
    assert re.match(r"^[a-z]+$", "app\n") is not None  # why: the hole this lint closes
    assert re.fullmatch(r"[a-z]+", "app\n") is None


def test_no_pattern_in_src_ends_in_dollar() -> None:
    offenders = []
    files = sorted(SRC.rglob("*.py"))
    assert files, SRC
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, pattern in literal_patterns(tree):
            if ends_in_dollar(pattern):
                offenders.append(f"{path.relative_to(SRC)}:{line}: {pattern!r}")
    assert offenders == [], (
        "these patterns end in '$', which also matches before a trailing newline: drop the "
        "anchors and use fullmatch\n" + "\n".join(offenders)
    )
