"""Releases: list them, read one and its config vars, roll back to one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.api.lists import JSON, list_response
from dynos.api.params import json_object
from dynos.errors import UserError
from dynos.platform.models import App, Release
from dynos.platform.platform import Platform


async def release_json(platform: Platform, app: App, release: Release) -> JSON:
    current = await platform.releases.current(app)
    is_current = current is not None and current.id == release.id
    return shapes.release(release, app, platform.account, is_current)


def release_routes(platform: Platform) -> list[BaseRoute]:
    releases = platform.releases

    async def list_all(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        found = await releases.list(app)
        newest = found[-1].id if found else None
        account = platform.account
        shaped = [shapes.release(r, app, account, r.id == newest) for r in found]
        return list_response(request, shaped, ("version", "id"))

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        release = await releases.get(app, request.path_params["release"])
        return JSONResponse(await release_json(platform, app, release))

    async def config_vars(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        release = await releases.get(app, request.path_params["release"])
        return JSONResponse(release.config)

    async def roll_back(request: Request) -> Response:
        """``{"release": id_or_version}`` makes a new release of that one's slug and config
        vars. (dynos makes releases of new code only by deploys.)"""
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        target = body.get("release")
        if isinstance(target, int) and not isinstance(target, bool):
            target = str(target)
        if not isinstance(target, str) or not target:
            raise UserError(
                'Send {"release": "<release id or version>"} to roll back to it; new code '
                "is released by a deploy (POST /apps/{app}/deploys)."
            )
        release = await releases.rollback(app, await releases.get(app, target))
        return JSONResponse(await release_json(platform, app, release), status_code=201)

    return [
        Route("/apps/{app}/releases", list_all),
        Route("/apps/{app}/releases", roll_back, methods=["POST"]),
        Route("/apps/{app}/releases/{release}", info),
        Route("/apps/{app}/releases/{release}/config-vars", config_vars),
    ]
