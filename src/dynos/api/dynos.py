"""Dynos and dyno sizes: list and read dynos, restart or stop them (one-off dynos are
created in :mod:`dynos.api.one_off`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.api.lists import list_response
from dynos.errors import NotFound, UserError
from dynos.platform.platform import Platform


def dyno_routes(platform: Platform) -> list[BaseRoute]:
    dynos = platform.dynos

    async def list_all(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        shaped = [shapes.dyno(d) for d in dynos.list(app)]
        return list_response(request, shaped, ("id", "name"), {"name": _dyno_order})

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return JSONResponse(shapes.dyno(dynos.find(app, request.path_params["dyno"])))

    async def restart(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        dynos.restart(app, request.path_params.get("dyno"))
        return JSONResponse({}, status_code=202)

    async def stop(request: Request) -> Response:
        """Stop a dyno (or every dyno of a type): a formation's dynos start again, as on
        Heroku (scale to 0 to keep them down); a one-off dyno stops for good."""
        app = await platform.get_app(request.path_params["app"])
        dynos.restart(app, request.path_params["dyno"], "Stop")
        return JSONResponse({}, status_code=202)

    async def list_sizes(request: Request) -> Response:
        return list_response(request, shapes.dyno_sizes(), ("id", "name"))

    async def size(request: Request) -> Response:
        try:
            return JSONResponse(shapes.size_by_name_or_id(request.path_params["size"]))
        except UserError as exc:
            raise NotFound(exc.message) from exc

    return [
        Route("/apps/{app}/dynos", list_all),
        Route("/apps/{app}/dynos", restart, methods=["DELETE"]),
        Route("/apps/{app}/dynos/{dyno}", info),
        Route("/apps/{app}/dynos/{dyno}", restart, methods=["DELETE"]),
        Route("/apps/{app}/dynos/{dyno}/actions/stop", stop, methods=["POST"]),
        Route("/dyno-sizes", list_sizes),
        Route("/dyno-sizes/{size}", size),
    ]


def _dyno_order(name: str) -> tuple[str, int, str]:
    """Dyno names sort by type, then number: web.2 before web.10."""
    type_, _, number = name.partition(".")
    digits = number.isascii() and number.isdigit()  # "²" is a digit that int() refuses
    return (type_, int(number), "") if digits else (type_, -1, number)
