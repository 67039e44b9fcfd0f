"""Endpoints the heroku CLI reads on the way to what it shows, for things dynos has no part of.

``heroku apps:info`` asks for an app's collaborators and pipeline coupling (and add-ons:
dynos.api.addons) before it prints anything. dynos answers them truthfully for a
single-account platform: the owner is the one collaborator, and no app is in a pipeline (404,
as Heroku answers for an uncoupled app).

(``heroku domains:add`` lists the app's SNI endpoints first: api/sni_endpoints.py answers.)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.errors import NotFound
from dynos.platform.platform import Platform


def compat_routes(platform: Platform) -> list[BaseRoute]:
    async def list_collaborators(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        return JSONResponse([shapes.owner_collaborator(app, platform.account)])

    async def pipeline_coupling(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        raise NotFound(f"{app.name} is not in a pipeline: dynos has no pipelines.")

    return [
        Route("/apps/{app}/collaborators", list_collaborators),
        Route("/apps/{app}/pipeline-couplings", pipeline_coupling),
    ]
