"""Reading request bodies: JSON objects, optional strings, formation updates.

Each reader raises BadRequest (400) for a body that is not the JSON object an endpoint takes
and UserError (422 ``invalid_params``) for a wrong value, with a message saying what to send.

A JSON body must say so in its ``Content-Type`` (``application/json``, or Heroku's
``application/vnd.heroku+json``), else it is refused with 415 before anything is read or
changed. A browser sends a cross-site form or a no-cors fetch only as ``text/plain``,
form-encoded or without a type, and sends a JSON type only after a CORS preflight that this
API never grants: so no other site can make a user's browser act here with their cached
credentials (HTTP Basic).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from dynos.core.scale import ScaleChange, parse_quantity
from dynos.core.sizes import find_size
from dynos.errors import BadRequest, UnsupportedMediaType, UserError

JSON_TYPES = ("application/json", "application/vnd.heroku+json")


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``"Application/JSON; charset=UTF-8"`` -> ``("application/json", {"charset": "utf-8"})``;
    ``("", {})`` for no header."""
    if header is None:
        return "", {}
    kind, *params = header.split(";")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def check_json_type(header: str | None) -> None:
    """UnsupportedMediaType unless ``header`` is a JSON type (in UTF-8, if it names a
    charset). Even for an empty body: a cross-site fetch may POST nothing, without a type."""
    kind, params = media_type(header)
    if kind in JSON_TYPES and params.get("charset", "utf-8") in ("utf-8", "utf8"):
        return
    said = f"'{header[:100]}'" if header is not None else "no Content-Type"
    raise UnsupportedMediaType(
        f"This endpoint reads JSON, and the request came with {said}: send the body as "
        "'Content-Type: application/json' (UTF-8). Nothing was changed."
    )


async def json_object(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` for an empty body when ``allow_empty``).

    Raises UnsupportedMediaType (415), before reading the body, unless it is sent as JSON.
    """
    check_json_type(request.headers.get("content-type"))
    raw = await request.body()
    if not raw.strip() and allow_empty:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def optional_str(body: dict[str, Any], key: str) -> str | None:
    """``body[key]`` when it is a non-empty string; None when absent, null or empty."""
    value = body.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise UserError(f"{key} must be a string.")
    return value


def scale_change(type_: object, update: dict[str, Any]) -> ScaleChange:
    """One formation update (``{"quantity": "+1", "size": "standard-2x"}``) for ``type_``.

    ``quantity`` is a number or a string (``"2"``, ``"+1"``, ``"-1"``), as the heroku CLI
    sends it; ``size`` any size name or alias, in any case.
    """
    if not isinstance(type_, str) or not type_:
        raise UserError('Each formation update needs a "type", e.g. {"type": "web"}.')
    size = update.get("size")
    if size is not None and not isinstance(size, str):
        raise UserError(f"Invalid size {size!r} for {type_}: use a name like standard-2X.")
    found = find_size(size) if size else None
    if update.get("quantity") is None:
        if found is None:
            raise UserError(f'Nothing to change for {type_}: send "quantity" and/or "size".')
        return ScaleChange(type_, None, 0, found)
    op, amount = parse_quantity(type_, update["quantity"])
    return ScaleChange(type_, op, amount, found)
