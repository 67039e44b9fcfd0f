"""Heroku's ``Range`` paging of list endpoints, as pure functions.

A client asks ``Range: version ..; order=desc, max=10`` (sort field, optional bounds, then
parameters); the answer holds at most ``max`` items and, when more remain, a
``Next-Range: version ]41..; max=10, order=desc`` header to send back for the next page
(``]`` marks an exclusive bound). Without a Range header a list is answered whole, in the
endpoint's own order, unless it holds more than ``DEFAULT_MAX`` items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dynos.errors import UserError

DEFAULT_MAX = 200  # Heroku's default page size
LARGEST_MAX = 1000  # and the largest it allows

JSON = dict[str, Any]


class RangeNotSatisfiable(UserError):
    id = "requested_range_not_satisfiable"
    status = 416


@dataclass(frozen=True)
class Range:
    field: str
    first: str | None = None  # the bound the page starts from (in ``order``)
    first_exclusive: bool = False
    last: str | None = None
    max: int = DEFAULT_MAX
    order: str = "asc"

    def header(self) -> str:
        start = ("]" if self.first_exclusive else "") + (self.first or "")
        return f"{self.field} {start}..{self.last or ''}; max={self.max}, order={self.order}"


@dataclass(frozen=True)
class Page:
    items: list[JSON]
    next_range: Range | None  # None when this page holds the last item
    content_range: str | None  # "version 3..12", None for an empty page


def parse_range(header: str | None, fields: Sequence[str]) -> Range | None:
    """Read a Range header; None when there is none (or it is empty).

    Raises RangeNotSatisfiable for a field the endpoint cannot sort by or a malformed header.
    """
    if header is None or not header.strip():
        return None
    spec, _, params = header.partition(";")
    field, _, bounds = spec.strip().partition(" ")
    if field not in fields:
        raise RangeNotSatisfiable(
            f"Cannot sort by {field!r}: use a Range on one of {', '.join(fields)} "
            f"(e.g. '{fields[0]} ..; max=10')."
        )
    bounds = bounds.strip() or ".."
    if ".." not in bounds:
        raise RangeNotSatisfiable(f"Malformed Range {header!r}: write e.g. '{field} ..; max=10'.")
    first, _, last = bounds.partition("..")
    exclusive = first.startswith("]")
    result = Range(field, first.removeprefix("]") or None, exclusive, last or None)
    # Parameters are comma-separated; the heroku CLI's paginator also ends them with a
    # semicolon (``id ..; max=1000;``), so a semicolon separates them too.
    for param in params.replace(";", ",").split(","):
        key, _, value = param.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        if key == "max":
            if not (value.isascii() and value.isdigit()) or int(value) < 1:
                raise RangeNotSatisfiable(
                    f"Range max must be a whole number above 0, not {value!r}."
                )
            result = replace(result, max=min(int(value), LARGEST_MAX))
        elif key == "order":
            if value not in ("asc", "desc"):
                raise RangeNotSatisfiable(f"Range order must be asc or desc, not {value!r}.")
            result = replace(result, order=value)
        else:
            raise RangeNotSatisfiable(f"Unknown Range parameter {key!r}: use max and order.")
    return result


def paginate(
    items: Sequence[JSON],
    wanted: Range,
    sort_keys: Mapping[str, Callable[[Any], Any]] | None = None,
) -> Page:
    """The page of ``items`` that ``wanted`` selects, sorted by its field.

    ``sort_keys`` maps a field to a function of its value where the value does not sort
    right by itself (``web.10`` after ``web.9``). Raises RangeNotSatisfiable for a bound of
    the wrong kind (``version ]abc..``).
    """
    field = wanted.field
    sort_key = (sort_keys or {}).get(field) or _identity
    descending = wanted.order == "desc"
    ordered = sorted(items, key=lambda item: sort_key(item[field]), reverse=descending)
    first = _bound(ordered, field, sort_key, wanted.first)
    last = _bound(ordered, field, sort_key, wanted.last)
    selected = []
    for item in ordered:
        value = sort_key(item[field])
        if first is not None:
            before = value > first if descending else value < first
            if before or (wanted.first_exclusive and value == first):
                continue
        if last is not None and (value < last if descending else value > last):
            continue
        selected.append(item)
    page = selected[: wanted.max]
    next_range = None
    if len(selected) > wanted.max:
        next_range = replace(wanted, first=str(page[-1][field]), first_exclusive=True)
    content_range = f"{field} {page[0][field]}..{page[-1][field]}" if page else None
    return Page(page, next_range, content_range)


def _identity(value: Any) -> Any:
    return value


def _bound(
    ordered: Sequence[JSON], field: str, sort_key: Callable[[Any], Any], text: str | None
) -> Any:
    """A bound's text as a sort key comparable with the items' (a number for numbers)."""
    if text is None or not ordered:
        return None
    if isinstance(ordered[0][field], int):
        try:
            return sort_key(int(text))
        except ValueError as exc:
            raise RangeNotSatisfiable(f"Range bound {text!r} must be a number.") from exc
    return sort_key(text)
