""".slugignore: what a slug leaves out, as on Heroku (pure: patterns and paths in, a verdict out).

One pattern a line, blank lines and ``#`` comments skipped, ``.gitignore``'s syntax without
negation: a pattern with no ``/`` but a trailing one matches a name at any depth, one with a
``/`` is anchored at the app's top; ``*``, ``?`` and ``[...]`` match within one path part and
``**`` across parts. A directory that matches goes with all it holds. The files are removed
after the upload and before the build, so the build never sees them either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SlugIgnore:
    patterns: tuple[re.Pattern[str], ...]

    def ignores(self, path: str) -> bool:
        """Whether ``path`` (``a/b``, relative to the app's top) is left out."""
        return any(pattern.fullmatch(path) for pattern in self.patterns)


def parse_slugignore(text: str) -> SlugIgnore:
    return SlugIgnore(tuple(_compile(line) for line in _lines(text)))


def _lines(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and line.strip("/"):
            lines.append(line)
    return lines


def _compile(line: str) -> re.Pattern[str]:
    body = line.strip("/")
    anchored = "/" in body or line.startswith("/")
    regex = _glob(body)
    if not anchored:
        regex = f"(?:.*/)?{regex}"
    return re.compile(regex)


def _glob(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)
