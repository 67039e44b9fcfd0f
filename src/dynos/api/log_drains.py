"""``/apps/{app}/log-drains``: the Platform API's log drains (``log-drain`` in Heroku's
schema). ``GET`` lists them or reads one, ``POST {"url"}`` adds one (201), ``DELETE`` removes
one; one is named by its id, URL or token. The heroku CLI's ``drains``, ``drains:add`` and
``drains:remove`` make exactly these requests (``drains:remove`` sends the URL
percent-encoded as one path segment, hence the ``path`` converter)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.lists import JSON, list_response
from dynos.api.params import json_object
from dynos.api.shapes import timestamp
from dynos.platform.models import LogDrain
from dynos.platform.platform import Platform


def log_drain(drain: LogDrain, *, extended: bool = False) -> JSON:
    shape: JSON = {
        "id": drain.id,
        "url": drain.url,
        "token": drain.token,
        "addon": None,  # drains added by hand; no add-on makes one here
        "created_at": timestamp(drain.created_at),
        "updated_at": timestamp(drain.updated_at),
    }
    if extended:  # `heroku drains -x`
        shape["extended"] = {"drain_id": drain.id}
    return shape


def log_drain_routes(platform: Platform) -> list[BaseRoute]:
    async def list_drains(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        extended = request.query_params.get("extended") == "true"
        drains = [log_drain(d, extended=extended) for d in await platform.drains.list(app)]
        return list_response(request, drains, ("id", "url", "token"))

    async def add_drain(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        drain = await platform.drains.add(app, body.get("url"))
        return JSONResponse(log_drain(drain), status_code=201)

    async def get_drain(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        drain = await platform.drains.get(app, request.path_params["drain"])
        return JSONResponse(log_drain(drain))

    async def remove_drain(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        drain = await platform.drains.remove(app, request.path_params["drain"])
        return JSONResponse(log_drain(drain))

    return [
        Route("/apps/{app}/log-drains", list_drains),
        Route("/apps/{app}/log-drains", add_drain, methods=["POST"]),
        Route("/apps/{app}/log-drains/{drain:path}", get_drain),
        Route("/apps/{app}/log-drains/{drain:path}", remove_drain, methods=["DELETE"]),
    ]
