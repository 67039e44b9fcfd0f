"""List answers, paged by Heroku's ``Range`` header (:mod:`dynos.api.ranges`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dynos.api.ranges import DEFAULT_MAX, Range, paginate, parse_range

JSON = dict[str, Any]


def list_response(
    request: Request,
    items: list[JSON],
    fields: Sequence[str],
    sort_keys: dict[str, Callable[[Any], Any]] | None = None,
) -> Response:
    """A list, paged by the request's Range header: 206 and Next-Range while more remain.

    Without a Range header the whole list comes in the endpoint's own order (up to
    DEFAULT_MAX items, then pages by the first of ``fields``).
    """
    headers = {"Accept-Ranges": ", ".join(fields)}
    wanted = parse_range(request.headers.get("range"), fields)
    if wanted is None:
        if len(items) <= DEFAULT_MAX:
            return JSONResponse(items, headers=headers)
        wanted = Range(fields[0])
    page = paginate(items, wanted, sort_keys)
    if page.content_range is not None:
        headers["Content-Range"] = page.content_range
    if page.next_range is None:
        return JSONResponse(page.items, headers=headers)
    headers["Next-Range"] = page.next_range.header()
    return JSONResponse(page.items, status_code=206, headers=headers)
