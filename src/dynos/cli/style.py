"""Heroku's output conventions, as pure functions: headers, key/value blocks, tables, times.

These mirror what the Heroku CLI prints (``=== header``, ``Key:  value`` blocks aligned on
the longest key, ``2026/11/27 03:50:00 +0000 (~ 1m ago)``) so that output reads the same.
The one impure helper is :func:`action`, which prints ``Doing something... done``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo

import click

APP_MARK = "\u2b22"  # ⬢, how Heroku names an app in messages


def app_label(app: str) -> str:
    """``⬢ app``, as Heroku names an app in action lines."""
    return f"{APP_MARK} {app}"


def header(text: str) -> str:
    """A Heroku styled header: ``=== text``."""
    return f"=== {text}"


def styled_object(pairs: Mapping[str, object]) -> list[str]:
    """``Key: value`` lines with the values aligned one space past the longest ``Key:``.

    Lists become ``a, b``; mappings become ``k: v, k2: v2`` (as Heroku shows ``Dynos:``).
    """
    if not pairs:
        return []
    width = max(len(key) for key in pairs) + 1
    lines = []
    for key, value in pairs.items():
        label = f"{key}:".ljust(width)
        lines.append(f"{label} {_plain(value)}".rstrip())
    return lines


def _plain(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def table(rows: Sequence[Sequence[str]], headings: Sequence[str] | None = None) -> list[str]:
    """Left-aligned columns separated by two spaces; trailing spaces are dropped."""
    all_rows = [list(headings)] if headings else []
    all_rows.extend(list(row) for row in rows)
    if not all_rows:
        return []
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(all_rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in all_rows
    ]


def parse_time(value: str) -> datetime:
    """An ISO 8601 time from the API (``2026-11-27T03:50:00Z``); naive times are UTC."""
    at = datetime.fromisoformat(value)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def ago(since: datetime, now: datetime) -> str:
    """``(~ 42s ago)``, ``(~ 5m ago)``, ``(~ 3h ago)``; empty from 25 hours on.

    Heroku's rule: whole seconds elapsed, floored, shown in the largest unit below 60s, 60m,
    25h; older times show only the date. A time in the future (clock skew) counts as 0s.
    """
    elapsed = max(0, math.floor((now - since).total_seconds()))
    if elapsed < 60:
        return f"(~ {elapsed}s ago)"
    if elapsed < 60 * 60:
        return f"(~ {elapsed // 60}m ago)"
    if elapsed < 60 * 60 * 25:
        return f"(~ {elapsed // 3600}h ago)"
    return ""


def format_since(since: datetime, now: datetime, tz: tzinfo | None = None) -> str:
    """``2026/11/27 03:50:00 +0000 (~ 1m ago)``: the time in ``tz`` (local if None) and its age."""
    local = since.astimezone(tz)
    stamp = local.strftime("%Y/%m/%d %H:%M:%S %z")
    suffix = ago(since, now)
    return f"{stamp} {suffix}" if suffix else stamp


def warn(warnings: Sequence[str]) -> None:
    """Print each warning on stderr as the heroku CLI does (an arrow, then ``Warning: ...``)."""
    for warning in warnings:
        click.echo(f" \u203a   Warning: {warning}", err=True)


def echo_lines(lines: Sequence[str], *, err: bool = False) -> None:
    for line in lines:
        click.echo(line, err=err)


class Action:
    """A running ``Doing something...`` line; :meth:`done` sets the text after ``...``."""

    def __init__(self) -> None:
        self.result = "done"

    def done(self, result: str) -> None:
        self.result = result


@contextmanager
def action(message: str) -> Iterator[Action]:
    """Print ``message...`` now and ``done`` (or ``!`` on an error) when the block ends.

    The line is finished before an exception leaves, so an error message starts a new line.
    """
    click.echo(f"{message}...", nl=False)
    state = Action()
    try:
        yield state
    except BaseException:
        click.echo(" !")
        raise
    click.echo(f" {state.result}")
