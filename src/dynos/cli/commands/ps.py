"""``ps``, ``ps:scale``, ``ps:type`` (``ps:resize``), ``ps:restart``, ``ps:stop``, ``sizes``.

The layouts follow the Heroku CLI: ``ps`` groups dynos under ``=== type (Size): command (N)``
headers, ``ps:scale`` ends ``done, now running web at 2:Standard-1X``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import click

from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import (
    action,
    app_label,
    echo_lines,
    format_since,
    header,
    parse_time,
    table,
    warn,
)
from dynos.core.scale import ScaleChange, parse_scale_arg
from dynos.core.sizes import DEFAULT_SIZE, find_size
from dynos.errors import UserError

Dyno = Mapping[str, Any]
Formation = Mapping[str, Any]


def process_number(name: str) -> int:
    """``web.12`` -> 12; a name without a number sorts first."""
    _, _, number = name.partition(".")
    return int(number) if number.isascii() and number.isdigit() else 0


def _dyno_since(dyno: Dyno, now: datetime, tz: tzinfo | None) -> str:
    stamp = dyno.get("updated_at") or dyno.get("created_at")
    if not isinstance(stamp, str):
        return ""
    try:
        return " " + format_since(parse_time(stamp), now, tz)
    except ValueError:
        return " " + stamp


def format_ps(
    app: str, dynos: Sequence[Dyno], now: datetime, tz: tzinfo | None = None
) -> list[str]:
    """Heroku's ``ps`` layout: one ``=== web (Standard-1X): command (2)`` group per process
    type and command, each dyno as ``web.1: up 2026/11/27 03:50:00 +0000 (~ 1m ago)``, a blank
    line after every group. Times are shown in ``tz`` (local time if None), ages against ``now``.
    """
    if not dynos:
        return [f"No dynos on {app_label(app)}"]
    groups: dict[str, list[Dyno]] = {}
    # One-off dynos first, as Heroku lists them (its run.NNNN sort before web and worker).
    for dyno in sorted(dynos, key=lambda d: (d.get("type") != "run", str(d.get("name", "")))):
        size = dyno.get("size") or DEFAULT_SIZE.name
        if dyno.get("type") == "run":
            key = "run: one-off processes"
        else:
            key = f"{dyno.get('type')} ({size}): {dyno.get('command', '')}"
        groups.setdefault(key, []).append(dyno)
    lines: list[str] = []
    for key, members in groups.items():
        lines.append(header(f"{key} ({len(members)})"))
        for dyno in sorted(members, key=lambda d: process_number(str(d.get("name", "")))):
            since = _dyno_since(dyno, now, tz)
            name, state = dyno.get("name"), dyno.get("state")
            if dyno.get("type") == "run":
                size = dyno.get("size") or DEFAULT_SIZE.name
                lines.append(f"{name} ({size}): {state}{since}: {dyno.get('command', '')}")
            else:
                lines.append(f"{name}: {state}{since}")
        lines.append("")
    return lines


def scale_updates(changes: Sequence[ScaleChange]) -> list[dict[str, object]]:
    """The ``PATCH /formation`` updates for parsed ``ps:scale`` arguments."""
    updates: list[dict[str, object]] = []
    for change in changes:
        update: dict[str, object] = {"type": change.type}
        if change.op == "=":
            update["quantity"] = change.amount
        elif change.op is not None:
            update["quantity"] = f"{change.op}{change.amount}"
        if change.size is not None:
            update["size"] = change.size.name
        updates.append(update)
    return updates


def format_now_running(formation: Sequence[Formation], types: Sequence[str]) -> str:
    """``done, now running web at 2:Standard-1X, worker at 1:Standard-1X`` for ``types``."""
    running = [
        f"{f.get('type')} at {f.get('quantity')}:{f.get('size')}"
        for f in formation
        if f.get("type") in types
    ]
    return "done, now running " + ", ".join(running)


def format_formation_line(formation: Sequence[Formation]) -> str:
    """``web=2:Standard-1X worker=1:Standard-1X``: ``ps:scale`` with no argument, sorted."""
    return " ".join(
        sorted(f"{f.get('type')}={f.get('quantity')}:{f.get('size')}" for f in formation)
    )


def format_process_types(formation: Sequence[Formation]) -> list[str]:
    """Heroku's ``ps:type`` tables: process types with size and quantity, then totals by size."""
    ordered = sorted(formation, key=lambda f: str(f.get("type", "")))
    rows = [[str(f.get("type")), str(f.get("size")), str(f.get("quantity"))] for f in ordered]
    totals: dict[str, int] = {}
    for f in ordered:
        quantity = f.get("quantity")
        totals[str(f.get("size"))] = totals.get(str(f.get("size")), 0) + (
            quantity if isinstance(quantity, int) else 0
        )
    total_rows = [[size, str(n)] for size, n in totals.items()]
    return [
        header("Process Types"),
        *table(rows, ["Type", "Size", "Qty"]),
        "",
        header("Dyno Totals"),
        *table(total_rows, ["Type", "Total"]),
    ]


def no_process_types(app: str) -> UserError:
    return UserError(
        f"No process types on {app_label(app)}: "
        "deploy the app with a Procfile first (dynos deploy)."
    )


@click.command()
@app_option
@click.option("--json", "as_json", is_flag=True, help="Print the dynos as JSON.")
@click.argument("types", nargs=-1)
def ps_list(app: str | None, as_json: bool, types: tuple[str, ...]) -> None:
    """List the app's dynos, optionally only those of TYPES."""
    name = require_app(app)
    with connect() as api:
        dynos: list[Dyno] = api.get(app_path(name, "dynos")) or []
    if types:
        dynos = [d for d in dynos if d.get("type") in types]
        for type_ in types:
            if not any(d.get("type") == type_ for d in dynos):
                raise UserError(f"No {type_} dynos on {app_label(name)}.")
    dynos = sorted(dynos, key=lambda d: str(d.get("name", "")))
    if as_json:
        click.echo(json.dumps(dynos, indent=2))
        return
    echo_lines(format_ps(name, dynos, datetime.now(UTC)))


@click.command()
@app_option
@click.argument("changes", nargs=-1, metavar="TYPE=N|TYPE+N|TYPE-N[:SIZE]...")
def ps_scale(app: str | None, changes: tuple[str, ...]) -> None:
    """Scale process types: web=2, worker+1, web=2:Standard-2X. No argument: show them."""
    parsed = [parse_scale_arg(arg) for arg in changes]
    name = require_app(app)
    with connect() as api:
        if not parsed:
            formation = api.get(app_path(name, "formation")) or []
            if not formation:
                raise no_process_types(name)
            click.echo(format_formation_line(formation))
            return
        with action("Scaling dynos") as progress:
            updated = api.patch(app_path(name, "formation"), {"updates": scale_updates(parsed)})
            progress.done(format_now_running(updated or [], [c.type for c in parsed]))
        warn(api.warnings)


def type_updates(args: Sequence[str], formation: Sequence[Formation]) -> list[dict[str, object]]:
    """``ps:type`` arguments as size updates: ``TYPE=SIZE ...``, or one SIZE for every type."""
    if any("=" in arg for arg in args):
        updates: list[dict[str, object]] = []
        for arg in args:
            type_, _, size = arg.partition("=")
            if not type_ or not size:
                raise UserError(f"Invalid argument {arg!r}: use TYPE=SIZE, e.g. web=Standard-2X.")
            updates.append({"type": type_, "size": find_size(size).name})
        return updates
    if len(args) != 1:
        raise UserError("Pass one SIZE for every process type, or TYPE=SIZE arguments.")
    size = find_size(args[0]).name
    return [{"type": f.get("type"), "size": size} for f in formation]


@click.command()
@app_option
@click.argument("sizes", nargs=-1, metavar="TYPE=SIZE...|SIZE")
def ps_type(app: str | None, sizes: tuple[str, ...]) -> None:
    """Change dyno sizes (web=Standard-2X), or show them with no argument."""
    per_type = any("=" in arg for arg in sizes)
    if per_type or len(sizes) > 1:
        type_updates(sizes, [])  # check every argument before anything is sent
    name = require_app(app)
    with connect() as api:
        if sizes:
            current: list[Formation] = []
            if not per_type:
                current = api.get(app_path(name, "formation")) or []
            updates = type_updates(sizes, current)
            with action(f"Scaling dynos on {app_label(name)}"):
                api.patch(app_path(name, "formation"), {"updates": updates})
            warn(api.warnings)
        formation = api.get(app_path(name, "formation")) or []
    if not formation:
        raise no_process_types(name)
    echo_lines(format_process_types(formation))


def _target(arg: str | None, dyno: str | None, type_: str | None) -> str | None:
    return dyno or type_ or arg


def target_phrase(target: str | None) -> str:
    """``web.1 dyno``, ``web dynos`` or ``dynos``: what a restart or stop acts on."""
    if target is None:
        return "dynos"
    return f"{target} dyno" if "." in target else f"{target} dynos"


@click.command()
@app_option
@click.argument("target", required=False, metavar="[TYPE|DYNO]")
@click.option("-d", "--dyno-name", help="Restart only this dyno (web.1).")
@click.option("-p", "--process-type", help="Restart every dyno of this type.")
def ps_restart(
    app: str | None, target: str | None, dyno_name: str | None, process_type: str | None
) -> None:
    """Restart every dyno, the dynos of one type, or one dyno."""
    name = require_app(app)
    which = _target(target, dyno_name, process_type)
    path = app_path(name, "dynos", which) if which else app_path(name, "dynos")
    with connect() as api, action(f"Restarting {target_phrase(which)} on {app_label(name)}"):
        api.delete(path)


@click.command()
@app_option
@click.argument("target", required=False, metavar="TYPE|DYNO")
@click.option("-d", "--dyno-name", help="Stop this dyno (web.1).")
@click.option("-p", "--process-type", help="Stop every dyno of this type.")
def ps_stop(
    app: str | None, target: str | None, dyno_name: str | None, process_type: str | None
) -> None:
    """Stop a dyno or the dynos of a type (formation dynos are started again)."""
    name = require_app(app)
    which = _target(target, dyno_name, process_type)
    if which is None:
        raise UserError("Name the dyno (web.1) or process type (web) to stop.")
    path = app_path(name, "dynos", which, "actions", "stop")
    with connect() as api, action(f"Stopping {target_phrase(which)} on {app_label(name)}"):
        api.post(path)


def format_sizes(sizes: Sequence[Mapping[str, Any]]) -> list[str]:
    """A table of dyno sizes: name, memory in MB, compute units."""
    rows = []
    for size in sizes:
        memory = size.get("memory_mb")
        if memory is None and isinstance(size.get("memory"), int | float):
            memory = round(size["memory"] * 1024)  # Heroku's schema gives GB
        rows.append([str(size.get("name", "")), str(memory or ""), str(size.get("compute", ""))])
    return table(rows, ["Name", "Memory (MB)", "Compute"])


@click.command()
def sizes_list() -> None:
    """List the dyno sizes."""
    with connect() as api:
        sizes = api.get("/dyno-sizes") or []
    echo_lines(format_sizes(sizes))


COMMANDS: dict[str, click.Command] = {
    "ps": ps_list,
    "ps:scale": ps_scale,
    "ps:type": ps_type,
    "ps:resize": ps_type,
    "ps:restart": ps_restart,
    "restart": ps_restart,  # Heroku's alias
    "ps:stop": ps_stop,
    "sizes": sizes_list,
}
