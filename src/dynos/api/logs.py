"""Log sessions over the API: create one, stream it (:mod:`dynos.api.log_sessions`)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.api.log_sessions import MAX_LINES, LogSession, LogSessions, check_source
from dynos.api.params import json_object, optional_str
from dynos.errors import NotFound, UserError
from dynos.platform.platform import Platform

# Stream URLs carry their own credential: the API's token is not asked for under this path.
STREAM_PREFIX = "/log-sessions/"


def log_routes(platform: Platform) -> list[BaseRoute]:
    sessions = LogSessions(platform.logs)

    async def create(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request, allow_empty=True)
        lines = body.get("lines", 100)
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
            raise UserError("lines must be a whole number of log lines, e.g. 100.")
        session = sessions.create(
            LogSession(
                app=app.name,
                lines=min(lines, MAX_LINES),
                tail=bool(body.get("tail", False)),
                dyno=optional_str(body, "dyno"),
                source=check_source(optional_str(body, "source")),
            )
        )
        # The URL the client reached us by: right behind a proxy or on a public address.
        url = str(request.base_url).rstrip("/") + STREAM_PREFIX + session.key
        shape = shapes.log_session(session.id, url, datetime.now(UTC))
        return JSONResponse(shape, status_code=201)

    async def stream(request: Request) -> Response:
        session = sessions.get(request.path_params["session"])
        if session is None:
            raise NotFound("This log session has expired: run 'logs' again.")
        events = "text/event-stream" in request.headers.get("accept", "")
        kind = "text/event-stream" if events else "text/plain; charset=utf-8"
        return StreamingResponse(
            sessions.stream(session, events=events),
            media_type=kind,
            headers={"Cache-Control": "no-cache"},
        )

    return [
        Route("/apps/{app}/log-sessions", create, methods=["POST"]),
        Route(STREAM_PREFIX + "{session}", stream),
    ]
