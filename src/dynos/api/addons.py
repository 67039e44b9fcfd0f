"""Add-ons over the API, in the Heroku Platform API's ``add-on`` shape.

``POST /apps/{app}/addons`` takes ``{"plan": "redis"}`` (or the heroku CLI's
``{"plan": {"name": "heroku-redis:mini"}}``) and answers 201 once the service runs and the
app has been released with its config var; ``DELETE /apps/{app}/addons/{addon}`` answers the
add-on as ``deprovisioned`` once its service is stopped and its data deleted.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.params import json_object, optional_str
from dynos.api.shapes import timestamp
from dynos.errors import NotFound, PlatformError, UserError
from dynos.platform.addons import Addons
from dynos.platform.models import Addon, App
from dynos.platform.platform import Platform

JSON = dict[str, Any]
_IDS = uuid.UUID("5b0c6b8e-3f39-4c53-9a7e-1d2f0c9a6e41")  # namespace of service and plan ids


def addon_json(addon: Addon, app: App, state: str = "provisioned") -> JSON:
    service = addon.service
    price = {"cents": 0, "contract": False, "unit": "month"}
    return {
        "id": addon.id,
        "name": addon.name,
        "addon_service": {"id": str(uuid.uuid5(_IDS, service)), "name": service},
        "plan": {"id": str(uuid.uuid5(_IDS, addon.plan)), "name": addon.plan, "price": price},
        "app": {"id": app.id, "name": app.name},
        "billing_entity": {"id": app.id, "name": app.name, "type": "app"},
        "billed_price": price,
        "config_vars": [addon.config_var],
        "actions": [],
        "provider_id": addon.id,
        "state": state,
        "web_url": None,
        "created_at": timestamp(addon.created_at),
        "updated_at": timestamp(addon.updated_at),
    }


def addon_routes(platform: Platform) -> list[BaseRoute]:
    def addons() -> Addons:
        if platform.addons is None:
            raise PlatformError("This dynos server runs no add-ons.")
        return platform.addons

    async def shaped(addon: Addon, state: str = "provisioned") -> JSON:
        return addon_json(addon, await platform.get_app(addon.app_id), state)

    async def list_all(request: Request) -> Response:
        return JSONResponse([await shaped(a) for a in await addons().list()])

    async def list_for_app(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return JSONResponse([addon_json(a, app) for a in await addons().list(app)])

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        addon = await addons().find(app, request.path_params["addon"])
        return JSONResponse(addon_json(addon, app))

    async def info_anywhere(request: Request) -> Response:
        wanted = request.path_params["addon"]
        for addon in await addons().list():
            if wanted in (addon.name, addon.id):
                return JSONResponse(await shaped(addon))
        raise NotFound(f"Couldn't find add-on {wanted}. Run 'dynos addons' to list them.")

    async def create(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        plan = body.get("plan")
        if isinstance(plan, dict):
            plan = plan.get("name") or plan.get("id")
        if not isinstance(plan, str) or not plan:
            raise UserError('Send the add-on to create as "plan", e.g. {"plan": "redis"}.')
        addon = await addons().create(app, plan, optional_str(body, "name"))
        return JSONResponse(addon_json(addon, app), status_code=201)

    async def destroy(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        addon = await addons().find(app, request.path_params["addon"])
        await addons().destroy(app, addon)
        return JSONResponse(addon_json(addon, app, "deprovisioned"))

    return [
        Route("/addons", list_all),
        Route("/addons/{addon}", info_anywhere),
        Route("/apps/{app}/addons", list_for_app),
        Route("/apps/{app}/addons", create, methods=["POST"]),
        Route("/apps/{app}/addons/{addon}", info),
        Route("/apps/{app}/addons/{addon}", destroy, methods=["DELETE"]),
    ]
