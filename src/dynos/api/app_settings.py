"""``/apps/{app}/settings``: dynos' per-app platform settings (an extra: Heroku has none).

``GET`` answers ``{"idle_after": 600, ...}`` (only what is set); ``PATCH`` takes the same
object, ``null`` unsetting a setting, and answers the new settings.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.params import json_object
from dynos.platform.platform import Platform


def settings_routes(platform: Platform) -> list[BaseRoute]:
    async def get_settings(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return JSONResponse(await platform.settings(app))

    async def update_settings(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        return JSONResponse(await platform.update_settings(app, body))

    return [
        Route("/apps/{app}/settings", get_settings),
        Route("/apps/{app}/settings", update_settings, methods=["PATCH"]),
    ]
