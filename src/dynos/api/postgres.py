"""Postgres add-ons over the API: what ``dynos pg:*`` needs (dynos' own routes: Heroku serves
these from its data API, whose shapes are not public; the names follow Heroku's CLI output).

- ``GET  /apps/{app}/addons/{addon}/postgres``: pg:info (plan, status, sizes, connections);
- ``GET  /apps/{app}/addons/{addon}/backups``: pg:backups, oldest first;
- ``POST /apps/{app}/addons/{addon}/backups``: pg:backups:capture, 201 once the dump is made;
- ``GET  /apps/{app}/addons/{addon}/backups/{backup}``: one backup (``b001``, or ``latest``);
- ``GET  /apps/{app}/addons/{addon}/backups/{backup}/download``: its pg_dump custom-format
  bytes;
- ``POST /apps/{app}/addons/{addon}/backups/{backup}/restore``: replace the database's
  contents with it (``{"confirm": "<app>"}`` required, as the CLI's ``--confirm``).

``{addon}`` is anything ``addons:info`` takes: a name, an id, ``DATABASE``, ``DATABASE_URL``,
``HEROKU_POSTGRESQL_PINK``, or ``heroku-postgresql`` when the app has one database.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.params import json_object
from dynos.api.shapes import timestamp
from dynos.core.postgres_plans import SERVICE
from dynos.errors import PlatformError, UserError
from dynos.platform.addons import Addons
from dynos.platform.models import Addon, App
from dynos.platform.platform import Platform
from dynos.platform.postgres import DatabaseInfo
from dynos.platform.postgres_backups import Backup

JSON = dict[str, Any]
LATEST = "latest"


def info_json(info: DatabaseInfo, app: App) -> JSON:
    addon = info.addon
    return {
        "addon": {"id": addon.id, "name": addon.name},
        "app": {"id": app.id, "name": app.name},
        "config_var": addon.config_var,
        "plan": {"name": info.plan.name, "display_name": info.plan.display_name},
        "status": info.status,
        "postgres_version": info.version,
        "data_size": info.data_size,
        "storage_cap": info.storage_cap,
        "tables": info.tables,
        "connections": info.connections,
        "connection_limit": info.plan.connections,
        "created_at": timestamp(addon.created_at),
    }


def backup_json(backup: Backup, app: App) -> JSON:
    return {
        "id": backup.id,
        "addon": {"id": backup.addon.id, "name": backup.addon.name},
        "app": {"id": app.id, "name": app.name},
        "database": backup.addon.config_var.removesuffix("_URL"),
        "status": "Completed",
        "size": backup.size,
        "format": "pg_dump custom",
        "created_at": timestamp(backup.created_at),
    }


def postgres_routes(platform: Platform) -> list[BaseRoute]:
    def addons() -> Addons:
        if platform.addons is None:
            raise PlatformError("This dynos server runs no add-ons.")
        return platform.addons

    async def database(request: Request) -> tuple[App, Addon]:
        app = await platform.get_app(request.path_params["app"])
        addon = await addons().find(app, request.path_params["addon"])
        if addon.service != SERVICE:
            raise UserError(f"{addon.name} is not a Postgres database: it is {addon.service}.")
        return app, addon

    def chosen(addon: Addon, request: Request) -> Backup:
        wanted = request.path_params["backup"]
        return addons().postgres.backups.get(addon, None if wanted == LATEST else wanted)

    async def info(request: Request) -> Response:
        app, addon = await database(request)
        return JSONResponse(info_json(await addons().postgres.info(addon), app))

    async def list_backups(request: Request) -> Response:
        app, addon = await database(request)
        return JSONResponse([backup_json(b, app) for b in addons().postgres.backups.list_of(addon)])

    async def capture(request: Request) -> Response:
        app, addon = await database(request)
        backup = await addons().postgres.backups.capture(addon)
        return JSONResponse(backup_json(backup, app), status_code=201)

    async def backup_info(request: Request) -> Response:
        app, addon = await database(request)
        return JSONResponse(backup_json(chosen(addon, request), app))

    async def download(request: Request) -> Response:
        _, addon = await database(request)
        backup = chosen(addon, request)
        return FileResponse(
            backup.path,
            media_type="application/octet-stream",
            filename=f"{addon.name}-{backup.id}.dump",
        )

    async def restore(request: Request) -> Response:
        app, addon = await database(request)
        body = await json_object(request)
        if body.get("confirm") != app.name:
            raise UserError(
                f"Restoring replaces the data of {addon.name}: confirm with "
                f'{{"confirm": "{app.name}"}} (dynos pg:backups:restore --confirm {app.name}).'
            )
        backup = chosen(addon, request)
        await addons().postgres.backups.restore(addon, backup)
        return JSONResponse(backup_json(backup, app))

    prefix = "/apps/{app}/addons/{addon}"
    return [
        Route(f"{prefix}/postgres", info),
        Route(f"{prefix}/backups", list_backups),
        Route(f"{prefix}/backups", capture, methods=["POST"]),
        Route(f"{prefix}/backups/{{backup}}", backup_info),
        Route(f"{prefix}/backups/{{backup}}/download", download),
        Route(f"{prefix}/backups/{{backup}}/restore", restore, methods=["POST"]),
    ]
