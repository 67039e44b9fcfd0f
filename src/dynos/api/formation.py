"""The formation: list it, scale and resize process types, restart or stop a type's dynos."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.api.lists import JSON, list_response
from dynos.api.params import json_object, scale_change
from dynos.core.scale import ScaleChange
from dynos.errors import UserError
from dynos.platform.models import App
from dynos.platform.platform import Platform

WARNING_HEADER = "X-Heroku-Warning"


def formation_routes(platform: Platform) -> list[BaseRoute]:
    dynos = platform.dynos

    async def formation_json(app: App) -> list[JSON]:
        release = await platform.releases.current(app)
        processes = release.processes if release else {}
        return [
            shapes.formation(f, app, processes.get(f.type, "")) for f in await dynos.formation(app)
        ]

    async def warning_headers(app: App, changes: list[ScaleChange]) -> dict[str, str]:
        """Heroku's warning header, which the heroku CLI prints as a warning."""
        warnings = await scale_warnings(platform, app, changes)
        return {WARNING_HEADER: " ".join(warnings)} if warnings else {}

    async def list_all(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return list_response(request, await formation_json(app), ("id", "type"))

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        entry = await dynos.formation_entry(app, request.path_params["type"])
        return JSONResponse(_by_type(await formation_json(app), entry.type))

    async def batch_update(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        updates = body.get("updates")
        if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
            raise UserError('Send {"updates": [{"type": "web", "quantity": 2}, ...]}.')
        changes = [scale_change(await dynos.type_name(app, u.get("type")), u) for u in updates]
        changed = {f.type for f in await dynos.scale(app, changes)}
        shaped = [f for f in await formation_json(app) if f["type"] in changed]
        return JSONResponse(shaped, headers=await warning_headers(app, changes))

    async def update(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        type_ = await dynos.type_name(app, request.path_params["type"])
        change = scale_change(type_, await json_object(request))
        await dynos.scale(app, [change])
        shaped = _by_type(await formation_json(app), type_)
        return JSONResponse(shaped, headers=await warning_headers(app, [change]))

    async def restart_type(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        await dynos.restart_type(app, request.path_params["type"])
        return JSONResponse({}, status_code=202)

    async def stop_type(request: Request) -> Response:
        """Stop every dyno of a type: they start again, as on Heroku (scale to 0 instead)."""
        app = await platform.get_app(request.path_params["app"])
        await dynos.restart_type(app, request.path_params["type"], "Stop")
        return JSONResponse({}, status_code=202)

    return [
        Route("/apps/{app}/formation", list_all),
        Route("/apps/{app}/formation", batch_update, methods=["PATCH"]),
        Route("/apps/{app}/formation/{type}", info),
        Route("/apps/{app}/formation/{type}", update, methods=["PATCH"]),
        Route("/apps/{app}/formations/{type}", restart_type, methods=["DELETE"]),
        Route("/apps/{app}/formations/{type}/actions/stop", stop_type, methods=["POST"]),
    ]


async def scale_warnings(platform: Platform, app: App, changes: list[ScaleChange]) -> list[str]:
    """What to tell whoever just scaled ``app`` by hand (the API, the dashboard): a formation
    bigger than the host, and the autoscaling this manual scale turned off (it does so)."""
    off = await platform.autoscaling.overridden_by(app, changes)
    warnings = [
        f"Autoscaling of {type_} is now off: a manual scale overrides it until "
        f"'dynos ps:autoscale:enable {type_}' turns it on again."
        for type_ in off
    ]
    memory = await platform.dynos.memory_warning(app)
    return warnings + ([memory] if memory else [])


def _by_type(formation: list[JSON], type_: object) -> JSON:
    return next(f for f in formation if f["type"] == type_)
