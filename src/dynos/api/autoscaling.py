"""``/apps/{app}/formation/{type}/autoscaling`` (dynos' own: Heroku's autoscaling lives in
its metrics service, outside the Platform API). ``GET`` reads a type's policy, its status and
its last decisions; ``PUT`` with a policy (core/autoscaling_policy.py's ``parse_policy``
fields) turns it on or changes it; ``DELETE`` turns it off. ``GET /apps/{app}/autoscaling``
lists the app's types that have a policy."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.lists import JSON
from dynos.api.params import json_object
from dynos.core.autoscaling_policy import policy_json
from dynos.platform.autoscaling import TypeState
from dynos.platform.platform import Platform


def autoscaling_json(type_: str, state: TypeState | None) -> JSON:
    if state is None:
        return {"type": type_, "enabled": False, "policy": None, "status": "off", "decisions": []}
    return {
        "type": type_,
        "enabled": True,
        "policy": policy_json(state.policy),
        "status": state.status,
        "decisions": [
            {
                "at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
                "from": decision.previous,
                "to": decision.quantity,
                "metric": decision.metric,
                "target": decision.target,
                "reason": decision.reason,
            }
            for at, decision in state.decisions
        ],
    }


def autoscaling_routes(platform: Platform) -> list[BaseRoute]:
    autoscaling = platform.autoscaling

    async def list_all(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return JSONResponse([autoscaling_json(t, s) for t, s in await autoscaling.show(app)])

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        type_ = (await platform.dynos.formation_entry(app, request.path_params["type"])).type
        states = dict(await autoscaling.show(app))
        return JSONResponse(autoscaling_json(type_, states.get(type_)))

    async def enable(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        type_ = (await platform.dynos.formation_entry(app, request.path_params["type"])).type
        state = await autoscaling.enable(app, type_, body)
        return JSONResponse(autoscaling_json(type_, state))

    async def disable(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        type_ = (await platform.dynos.formation_entry(app, request.path_params["type"])).type
        await autoscaling.disable(app, type_)
        return JSONResponse(autoscaling_json(type_, None))

    path = "/apps/{app}/formation/{type}/autoscaling"
    return [
        Route("/apps/{app}/autoscaling", list_all),
        Route(path, info),
        Route(path, enable, methods=["PUT"]),
        Route(path, disable, methods=["DELETE"]),
    ]
