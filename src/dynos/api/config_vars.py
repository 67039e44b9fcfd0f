"""Config vars: ``GET`` and ``PATCH /apps/{app}/config-vars`` (a string sets, null unsets)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.params import json_object
from dynos.platform.platform import Platform


def config_routes(platform: Platform) -> list[BaseRoute]:
    async def get_config(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return JSONResponse(await platform.releases.config(app))

    async def update_config(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        changes = await json_object(request)
        return JSONResponse(await platform.releases.update_config(app, changes))

    return [
        Route("/apps/{app}/config-vars", get_config),
        Route("/apps/{app}/config-vars", update_config, methods=["PATCH"]),
    ]
