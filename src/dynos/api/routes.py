"""The HTTP API: Heroku Platform API v3 routes (and dynos' extras) over Starlette.

One module per resource, each a ``..._routes(platform)`` list of thin handlers: read the
request, call a use-case on the :class:`~dynos.platform.platform.Platform` (the API's only
door into dynos), shape the answer with :mod:`dynos.api.shapes`. Every error answers in
Heroku's ``{"id", "message"}`` shape (:mod:`dynos.api.errors`). Lists page with Heroku's
``Range`` header (:mod:`dynos.api.lists`). The ``Accept`` header's variant (``version=3``,
``3.sdk``, ...) does not change any answer.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from dynos.api.addon_attachments import attachment_routes
from dynos.api.addons import addon_routes
from dynos.api.app_settings import settings_routes
from dynos.api.apps import app_routes
from dynos.api.auth import BearerAuth
from dynos.api.compat import compat_routes
from dynos.api.config_vars import config_routes
from dynos.api.deploys import deploy_routes
from dynos.api.dynos import dyno_routes
from dynos.api.errors import CatchAll, dynos_error, http_error
from dynos.api.formation import formation_routes
from dynos.api.logs import STREAM_PREFIX, log_routes
from dynos.api.one_off import one_off_routes
from dynos.api.postgres import postgres_routes
from dynos.api.releases import OUTPUT_PREFIX, release_routes
from dynos.errors import DynosError, NotFound
from dynos.platform.platform import Platform


class Api:
    def __init__(
        self,
        platform: Platform,
        token: str,
        *,
        router_url: str,
        api_url: str,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        """``router_url`` is where apps are served (``{app}`` standing for an app's name),
        ``api_url`` where clients reach this API; ``metrics`` the router's registry."""
        routes: list[BaseRoute] = [
            *app_routes(platform, router_url),
            *release_routes(platform),
            *formation_routes(platform),
            *dyno_routes(platform),
            *config_routes(platform),
            *log_routes(platform),
            *deploy_routes(platform),
            *settings_routes(platform),
            *one_off_routes(platform, api_url),
            *addon_routes(platform),
            *attachment_routes(platform),
            *postgres_routes(platform),
            *compat_routes(platform),
            *metrics_routes(metrics),
        ]
        app = Starlette(
            routes=routes,
            middleware=[Middleware(CatchAll)],
            exception_handlers={DynosError: dynos_error, HTTPException: http_error},
        )
        self.app: ASGIApp = BearerAuth(app, token, open_prefixes=(STREAM_PREFIX, OUTPUT_PREFIX))


def metrics_routes(metrics: CollectorRegistry | None) -> list[BaseRoute]:
    async def get_metrics(request: Request) -> Response:
        """Prometheus text format. Async on purpose: the router's counters live on this
        loop's thread, and a threadpool endpoint would read them from another."""
        if metrics is None:
            raise NotFound("This server has no router metrics.")
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", get_metrics)]
