"""`ps:scale` arguments and formation changes, as pure functions.

``web=2``, ``web+1``, ``worker-1``, ``web=2:2X`` parse into :class:`ScaleChange`;
:func:`apply_changes` turns changes plus the current formation into the new formation, or
raises a UserError and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dynos.core.release_phase import RELEASE_TYPE
from dynos.core.sizes import DynoSize, find_size
from dynos.errors import NotFound, UserError

# Heroku caps a process type at 100 dynos; more would exhaust a single machine long before.
MAX_QUANTITY = 100

# Matched with fullmatch, never match and "$" (which lets a trailing newline through). ASCII
# digits only: "\d" and str.isdigit() take other scripts' digits, and superscripts int() refuses.
_ARG = re.compile(r"(?P<type>[A-Za-z0-9_-]+)(?P<op>[=+-])(?P<rest>.*)")
_QUANTITY = re.compile(r"(?P<op>[=+-]?)(?P<n>[0-9]+)")


@dataclass(frozen=True)
class ScaleChange:
    """One requested change to a process type: set (``=``), add (``+``) or remove (``-``)."""

    type: str
    op: str | None  # "=", "+", "-"; None when only the size changes
    amount: int
    size: DynoSize | None


@dataclass(frozen=True)
class FormationEntry:
    type: str
    quantity: int
    size: DynoSize


class Scalable(Protocol):
    """What scaling reads of a formation entry: the store's ``Formation`` is one, as it is."""

    @property
    def type(self) -> str: ...

    @property
    def quantity(self) -> int: ...

    @property
    def size(self) -> DynoSize: ...


def parse_quantity(type_: str, value: object) -> tuple[str, int]:
    """Read an API ``quantity``: an int, or a string ``"2"``, ``"=2"``, ``"+1"``, ``"-1"``."""
    if isinstance(value, bool):
        raise UserError(f"Invalid quantity {value!r} for {type_}: use a whole number like 2.")
    if isinstance(value, int):
        if value < 0:
            raise UserError(f"Invalid quantity {value} for {type_}: it cannot be negative.")
        return "=", value
    match = _QUANTITY.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise UserError(
            f"Invalid quantity {value!r} for {type_}: use a whole number like 2, or +1 / -1."
        )
    return match["op"] or "=", int(match["n"])


def parse_scale_arg(arg: str) -> ScaleChange:
    """Parse one ``ps:scale`` argument: ``TYPE=N``, ``TYPE+N``, ``TYPE-N``, each with ``:SIZE``.

    ``TYPE=SIZE`` alone changes only the size, as ``heroku ps:scale web=standard-2x`` does.
    """
    match = _ARG.fullmatch(arg.strip())
    if match is None:
        raise UserError(
            f"Invalid scale argument {arg!r}: use TYPE=N, TYPE+N or TYPE-N, "
            "optionally with :SIZE (e.g. web=2:2X)."
        )
    type_, op, rest = match["type"], match["op"], match["rest"]
    quantity, _, size_name = rest.partition(":")
    if quantity.isascii() and quantity.isdigit():
        size = find_size(size_name) if size_name else None
        return ScaleChange(type_, op, int(quantity), size)
    if op == "=" and quantity and not size_name and not _QUANTITY.fullmatch(quantity):
        try:
            return ScaleChange(type_, None, 0, find_size(quantity))
        except UserError:
            pass
    raise UserError(
        f"Invalid quantity {quantity!r} in {arg!r}: use a whole number, e.g. {type_}{op}2."
    )


def apply_changes(
    current: Mapping[str, Scalable], changes: Iterable[ScaleChange]
) -> dict[str, FormationEntry]:
    """The formation after ``changes``; only the changed types are returned.

    Raises NotFound for a process type the app's release does not have and UserError for a
    result below zero or above MAX_QUANTITY, before anything is changed.
    """
    result: dict[str, FormationEntry] = {}
    for change in changes:
        entry: Scalable | None = result.get(change.type) or current.get(change.type)
        if entry is None and change.type == RELEASE_TYPE:
            raise UserError(
                "release is the release phase's command, not a process type to scale: it "
                "runs once for each new release, before the release goes live."
            )
        if entry is None:
            known = ", ".join(sorted(current)) or "none: deploy the app first"
            raise NotFound(f"No such process type {change.type!r}. Process types: {known}.")
        quantity = entry.quantity
        if change.op == "=":
            quantity = change.amount
        elif change.op == "+":
            quantity += change.amount
        elif change.op == "-":
            quantity -= change.amount
        if quantity < 0:
            raise UserError(
                f"Cannot scale {change.type} to {quantity}: it has {entry.quantity} dynos."
            )
        if quantity > MAX_QUANTITY:
            raise UserError(f"Cannot scale {change.type} above {MAX_QUANTITY} dynos.")
        result[change.type] = FormationEntry(change.type, quantity, change.size or entry.size)
    return result


def format_formation(entries: Iterable[FormationEntry]) -> str:
    """``web=2:Standard-1X worker=1:Standard-1X``, as `ps:scale` with no argument prints."""
    return " ".join(f"{e.type}={e.quantity}:{e.size.name}" for e in entries)


def memory_warning(formation: Iterable[Scalable], host_bytes: int) -> str | None:
    """A warning for a formation whose dynos' memory quotas add up to more than the host's
    memory (None when they fit): accepted, as Heroku accepts what it can run, but its dynos
    would cross their quotas (R14/R15) or the host would run out of memory."""
    needed_mb = sum(entry.quantity * entry.size.memory_mb for entry in formation)
    host_mb = host_bytes // (1024 * 1024)
    if needed_mb <= host_mb:
        return None
    return (
        f"This formation's dynos may use {needed_mb / 1024:.1f} GB of memory (their sizes' "
        f"quotas), more than this host has ({host_mb / 1024:.1f} GB): they may be killed for "
        "memory (R15) or starve the host. Scale down, or choose smaller sizes."
    )
