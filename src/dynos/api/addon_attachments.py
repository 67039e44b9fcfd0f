"""Add-on attachments, and the resolve actions the heroku CLI finds add-ons with.

dynos attaches each add-on to its own app only, once, under the name of its config var
without ``_URL`` (``DATABASE``, ``HEROKU_POSTGRESQL_PINK``, ``REDIS``); so an attachment's id
is derived from its add-on's, and there is nothing to create or delete apart from the add-on
(``POST`` and ``DELETE /addon-attachments`` answer 422 saying so).

``POST /actions/addons/resolve`` (``{"addon": ..., "app": ...}``) and
``POST /actions/addon-attachments/resolve`` (``{"addon_attachment": ..., "app": ...}``)
answer the list of matches, as Heroku's do; ``heroku addons:info`` and the ``pg`` commands
call them.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.addons import addon_json
from dynos.api.params import json_object, optional_str
from dynos.api.shapes import timestamp
from dynos.errors import NotFound, PlatformError, UserError
from dynos.platform.addons import Addons
from dynos.platform.models import Addon, App
from dynos.platform.platform import Platform

JSON = dict[str, Any]
_IDS = uuid.UUID("0f4d8e47-6d3e-4c38-9a55-2b6f1c0e7a12")  # namespace of attachment ids


def attachment_id(addon: Addon) -> str:
    return str(uuid.uuid5(_IDS, addon.id))


def attachment_name(addon: Addon) -> str:
    return addon.config_var.removesuffix("_URL")


def attachment_json(addon: Addon, app: App) -> JSON:
    return {
        "id": attachment_id(addon),
        "name": attachment_name(addon),
        "addon": {
            "id": addon.id,
            "name": addon.name,
            "app": {"id": app.id, "name": app.name},
        },
        "app": {"id": app.id, "name": app.name},
        "namespace": None,
        "web_url": None,
        "log_input_url": None,
        "created_at": timestamp(addon.created_at),
        "updated_at": timestamp(addon.updated_at),
    }


def attachment_routes(platform: Platform) -> list[BaseRoute]:
    def addons() -> Addons:
        if platform.addons is None:
            raise PlatformError("This dynos server runs no add-ons.")
        return platform.addons

    async def everything() -> list[tuple[Addon, App]]:
        apps: dict[str, App] = {}
        found = []
        for addon in await addons().list():
            if addon.app_id not in apps:
                apps[addon.app_id] = await platform.get_app(addon.app_id)
            found.append((addon, apps[addon.app_id]))
        return found

    async def list_all(request: Request) -> Response:
        return JSONResponse([attachment_json(a, app) for a, app in await everything()])

    async def list_for_app(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return JSONResponse([attachment_json(a, app) for a in await addons().list(app)])

    async def list_for_addon(request: Request) -> Response:
        wanted = request.path_params["addon"]
        for addon, app in await everything():
            if wanted in (addon.name, addon.id):
                return JSONResponse([attachment_json(addon, app)])
        raise NotFound(f"Couldn't find add-on {wanted}. Run 'dynos addons' to list them.")

    async def info(request: Request) -> Response:
        wanted = request.path_params["attachment"]
        for addon, app in await everything():
            if wanted == attachment_id(addon):
                return JSONResponse(attachment_json(addon, app))
        raise NotFound(f"Couldn't find add-on attachment {wanted}.")

    async def info_for_app(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        wanted = request.path_params["attachment"]
        for addon in await addons().list(app):
            if wanted in (attachment_id(addon), attachment_name(addon)):
                return JSONResponse(attachment_json(addon, app))
        raise NotFound(
            f"Couldn't find add-on attachment {wanted} on {app.name}. "
            "Run 'dynos addons' to list them."
        )

    async def not_separately(request: Request) -> Response:
        raise UserError(
            "dynos attaches each add-on to its own app when it is created: create or destroy "
            "the add-on instead (dynos addons:create, addons:destroy)."
        )

    async def matching(body: JSON, key: str) -> list[tuple[Addon, App]]:
        wanted = body.get(key)
        if not isinstance(wanted, str) or not wanted:
            raise UserError(f'Send what to resolve as "{key}".')
        app_name = optional_str(body, "app")
        service = optional_str(body, "addon_service")
        candidates = await everything()
        if app_name is not None:
            app = await platform.get_app(app_name)
            candidates = [(a, owner) for a, owner in candidates if owner.id == app.id]
        if service is not None:
            candidates = [(a, owner) for a, owner in candidates if a.service == service]
        found = []
        for addon, app in candidates:
            if app_name is not None:
                try:
                    hit = (await addons().find(app, wanted)).id == addon.id
                except NotFound:
                    hit = False
            else:
                hit = wanted in (addon.name, addon.id)
            if hit:
                found.append((addon, app))
        if not found:
            where = f" on {app_name}" if app_name else ""
            raise NotFound(f"Couldn't find {wanted}{where}. Run 'dynos addons' to list them.")
        return found

    async def resolve_addon(request: Request) -> Response:
        found = await matching(await json_object(request), "addon")
        return JSONResponse([addon_json(addon, app) for addon, app in found])

    async def resolve_attachment(request: Request) -> Response:
        found = await matching(await json_object(request), "addon_attachment")
        return JSONResponse([attachment_json(addon, app) for addon, app in found])

    return [
        Route("/addon-attachments", list_all),
        Route("/addon-attachments", not_separately, methods=["POST"]),
        Route("/addon-attachments/{attachment}", info),
        Route("/addon-attachments/{attachment}", not_separately, methods=["DELETE"]),
        Route("/addons/{addon}/addon-attachments", list_for_addon),
        Route("/apps/{app}/addon-attachments", list_for_app),
        Route("/apps/{app}/addon-attachments/{attachment}", info_for_app),
        Route("/actions/addons/resolve", resolve_addon, methods=["POST"]),
        Route("/actions/addon-attachments/resolve", resolve_attachment, methods=["POST"]),
    ]
