"""Every failure of an API request answers in Heroku's error shape, ``{"id", "message"}``.

- A :class:`~dynos.errors.DynosError` (the client's mistake, or the platform's known
  failure) answers with its own id, message and status.
- Starlette's HTTPException (no such route, a method the route lacks) answers ``not_found``
  / ``method_not_allowed``.
- Anything else is a bug: :class:`CatchAll` answers a JSON 500 ``internal_error`` whose
  message and ``Request-Id`` header carry a request id, and writes the traceback to the
  server's log under that id, so that a user's report leads to it. (Without it Starlette
  would answer its plain-text 500, which the heroku CLI cannot read.)
"""

from __future__ import annotations

import logging
import uuid

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynos.errors import DynosError

log = logging.getLogger("dynos.api")


async def dynos_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DynosError)
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    ids = {404: "not_found", 405: "method_not_allowed"}
    message = f"No such endpoint: {request.method} {request.url.path}. See docs/api.md."
    return JSONResponse(
        {"id": ids.get(exc.status_code, "bad_request"), "message": message},
        status_code=exc.status_code,
    )


class CatchAll:
    """Turns an unexpected exception of an HTTP request into a JSON 500 (see the module).

    A response that has started cannot be taken back: the exception then goes on to the
    server, which logs it and breaks the connection, so that the client sees a failure.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            request_id = str(uuid.uuid4())
            log.error(
                "request %s: %s %s failed",
                request_id,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            error = DynosError(
                f"The dynos server failed on this request (request id {request_id}; the "
                "server's log has the details): it may have been applied or not; check "
                "before you retry."
            )
            response = JSONResponse(
                error.to_json(), status_code=500, headers={"Request-Id": request_id}
            )
            await response(scope, receive, send)
