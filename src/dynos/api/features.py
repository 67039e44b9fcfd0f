"""``/apps/{app}/features``: the Platform API's app features (``app-feature`` in Heroku's
schema). ``GET`` lists them or reads one (by name or id); ``PATCH`` with ``{"enabled": bool}``
switches one. The heroku CLI's ``features``, ``features:info``, ``features:enable`` and
``features:disable`` make exactly these requests."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.lists import JSON, list_response
from dynos.api.params import json_object
from dynos.api.shapes import timestamp
from dynos.core.features import Feature, feature_id, parse_enabled
from dynos.platform.models import App, AppFeature
from dynos.platform.platform import Platform


def app_feature(app: App, feature: Feature, state: AppFeature) -> JSON:
    return {
        "id": feature_id(app.id, feature.name),
        "name": feature.name,
        "display_name": feature.display_name,
        "description": feature.description,
        "doc_url": feature.doc_url,
        "state": feature.state,
        "enabled": state.enabled,
        "feedback_email": "",
        # A feature never switched has the app's times: it has been there since.
        "created_at": timestamp(state.created_at or app.created_at),
        "updated_at": timestamp(state.updated_at or app.created_at),
    }


def feature_routes(platform: Platform) -> list[BaseRoute]:
    async def list_features(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        found = await platform.features.list(app)
        return list_response(request, [app_feature(app, f, s) for f, s in found], ("id", "name"))

    async def get_feature(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        feature, state = await platform.features.get(app, request.path_params["feature"])
        return JSONResponse(app_feature(app, feature, state))

    async def update_feature(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        enabled = parse_enabled(await json_object(request))
        feature, state = await platform.features.set(app, request.path_params["feature"], enabled)
        return JSONResponse(app_feature(app, feature, state))

    return [
        Route("/apps/{app}/features", list_features),
        Route("/apps/{app}/features/{feature}", get_feature),
        Route("/apps/{app}/features/{feature}", update_feature, methods=["PATCH"]),
    ]
