"""Procfile parsing: ``type: command`` lines into an ordered mapping of process types."""

from __future__ import annotations

import re

from dynos.errors import UserError

_LINE = re.compile(r"(?P<type>[A-Za-z0-9_-]+)\s*:\s*(?P<command>.*)")  # fullmatch


def parse_procfile(text: str) -> dict[str, str]:
    """Return ``{process type: command}`` in file order.

    Blank lines and ``#`` comments are skipped. Raises UserError naming the line for a line
    that is not ``type: command``, an empty command, or a type given twice, and when the file
    declares no process type at all.
    """
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise UserError(
                f"Procfile line {number} is not 'type: command': {line!r}. "
                "Process types use letters, digits, '-' and '_' (e.g. 'web: python3 web.py')."
            )
        type_, command = match["type"], match["command"].strip()
        if not command:
            raise UserError(f"Procfile line {number}: process type {type_!r} has no command.")
        if type_ in processes:
            raise UserError(f"Procfile line {number}: process type {type_!r} is declared twice.")
        processes[type_] = command
    if not processes:
        raise UserError("The Procfile declares no process type: add a line like 'web: ...'.")
    return processes
