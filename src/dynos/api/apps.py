"""The account and its apps: ``/account``, ``/apps``, ``/users/{user}/apps``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.api.lists import JSON, list_response
from dynos.api.params import json_object
from dynos.errors import Forbidden, UserError
from dynos.platform.models import App
from dynos.platform.platform import Platform


async def app_shape(platform: Platform, router_url: str, app: App, git_url: str = "") -> JSON:
    """The app as the Platform API shows it (``router_url``, ``git_url``: see ``app_routes``)."""
    release = await platform.releases.current(app)
    return shapes.app(
        app,
        platform.account,
        router_url.format(app=app.name),
        release.created_at if release else None,
        git_url.format(app=app.name),
        acm=platform.acm is not None and await platform.acm.is_enabled(app),
    )


def app_routes(platform: Platform, router_url: str, git_url: str = "") -> list[BaseRoute]:
    """``router_url`` is where an app is served and ``git_url`` its git repository,
    ``{app}`` standing for its name."""

    async def app_json(app: App) -> JSON:
        return await app_shape(platform, router_url, app, git_url)

    async def get_account(request: Request) -> Response:
        apps = await platform.list_apps()
        since = min((a.created_at for a in apps), default=datetime.now(UTC))
        return JSONResponse(shapes.account(platform.account, since))

    async def list_apps(request: Request) -> Response:
        apps = [await app_json(a) for a in await platform.list_apps()]
        return list_response(request, apps, ("id", "name"))

    async def list_user_apps(request: Request) -> Response:
        user = request.path_params["user"]
        account = platform.account
        if user not in ("~", account.id, account.email):
            raise Forbidden(f"You can list only your own apps: use /users/~/apps, not {user}.")
        return await list_apps(request)

    async def create(request: Request) -> Response:
        body = await json_object(request, allow_empty=True)
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise UserError("The app name must be a string.")
        _check_region_and_stack(body)
        app = await platform.create_app(name)
        return JSONResponse(await app_json(app), status_code=201)

    async def info(request: Request) -> Response:
        return JSONResponse(await app_json(await platform.get_app(request.path_params["app"])))

    async def update(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        if body.get("maintenance"):
            raise UserError("dynos has no maintenance mode: scale web to 0 to take an app down.")
        _check_region_and_stack(body, stack_key="build_stack")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise UserError("The app name must be a string.")
        if name is not None and name != app.name:
            app = await platform.rename_app(app, name)
        return JSONResponse(await app_json(app))

    async def destroy(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        shape = await app_json(app)
        await platform.destroy_app(app)
        return JSONResponse(shape)

    return [
        Route("/account", get_account),
        Route("/apps", list_apps),
        Route("/users/{user}/apps", list_user_apps),
        Route("/apps", create, methods=["POST"]),
        Route("/apps/{app}", info),
        Route("/apps/{app}", update, methods=["PATCH"]),
        Route("/apps/{app}", destroy, methods=["DELETE"]),
    ]


def _check_region_and_stack(body: dict[str, Any], stack_key: str = "stack") -> None:
    """dynos has one region and one stack; asking for another is an error, not ignored."""
    region, stack = body.get("region"), body.get(stack_key)
    if region not in (None, shapes.REGION["name"], shapes.REGION["id"]):
        raise UserError(f"Unknown region {region!r}: dynos has one region, local.")
    if stack not in (None, shapes.STACK["name"], shapes.STACK["id"]):
        raise UserError(f"Unknown stack {stack!r}: dynos has one stack, {shapes.STACK['name']}.")
