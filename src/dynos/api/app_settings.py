"""``/apps/{app}/settings``: dynos' per-app platform settings (an extra: Heroku has none).

``GET`` answers ``{"idle_after": 600, ...}`` (only what is set); ``PATCH`` takes the same
object, ``null`` unsetting a setting, and answers the new settings.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dynos.errors import BadRequest
from dynos.platform.platform import Platform


def settings_routes(platform: Platform) -> list[Route]:
    async def get_settings(request: Request) -> Response:
        app = platform.store.get_app(request.path_params["app"])
        return JSONResponse(platform.settings(app))

    async def update_settings(request: Request) -> Response:
        app = platform.store.get_app(request.path_params["app"])
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}.") from exc
        if not isinstance(body, dict):
            raise BadRequest('Send a JSON object, e.g. {"idle_after": 600}.')
        return JSONResponse(platform.update_settings(app, body))

    return [
        Route("/apps/{app}/settings", get_settings),
        Route("/apps/{app}/settings", update_settings, methods=["PATCH"]),
    ]
