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
from starlette.types import ASGIApp, Receive, Scope, Send

from dynos.api.acm import acm_routes
from dynos.api.addon_attachments import attachment_routes
from dynos.api.addons import addon_routes
from dynos.api.app_metrics import app_metrics_routes
from dynos.api.app_settings import settings_routes
from dynos.api.apps import app_routes
from dynos.api.auth import BearerAuth
from dynos.api.autoscaling import autoscaling_routes
from dynos.api.compat import compat_routes
from dynos.api.config_vars import config_routes
from dynos.api.deploys import deploy_routes
from dynos.api.domains import domain_routes
from dynos.api.dynos import dyno_routes
from dynos.api.errors import CatchAll, dynos_error, http_error
from dynos.api.features import feature_routes
from dynos.api.formation import formation_routes
from dynos.api.log_drains import log_drain_routes
from dynos.api.logs import STREAM_PREFIX, log_routes
from dynos.api.one_off import one_off_routes
from dynos.api.postgres import postgres_routes
from dynos.api.releases import OUTPUT_PREFIX, release_routes
from dynos.api.sni_endpoints import sni_routes
from dynos.dashboard.app import PREFIX as DASHBOARD
from dynos.dashboard.app import Dashboard
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
        git_url: str = "",
        metrics: CollectorRegistry | None = None,
        rendezvous_port: int | None = None,
    ) -> None:
        """``router_url`` is where apps are served and ``git_url`` their git repositories
        (``{app}`` standing for an app's name), ``api_url`` where clients reach this API;
        ``metrics`` the router's registry; ``rendezvous_port`` where ``heroku run`` attaches
        (api/rendezvous.py)."""
        routes: list[BaseRoute] = [
            *app_routes(platform, router_url, git_url),
            *acm_routes(platform, router_url, git_url),
            *release_routes(platform),
            *formation_routes(platform),
            *autoscaling_routes(platform),
            *dyno_routes(platform),
            *config_routes(platform),
            *log_routes(platform),
            *log_drain_routes(platform),
            *deploy_routes(platform),
            *settings_routes(platform),
            *domain_routes(platform),
            *feature_routes(platform),
            *app_metrics_routes(platform),
            *one_off_routes(platform, api_url, rendezvous_port),
            *addon_routes(platform),
            *attachment_routes(platform),
            *postgres_routes(platform),
            *sni_routes(platform),
            *compat_routes(platform),
            *metrics_routes(metrics),
        ]
        self.routes = routes  # what this API answers: tests walk it (tests/api/test_fuzz.py)
        app = Starlette(
            routes=routes,
            middleware=[Middleware(CatchAll)],
            exception_handlers={DynosError: dynos_error, HTTPException: http_error},
        )
        api: ASGIApp = BearerAuth(app, token, open_prefixes=(STREAM_PREFIX, OUTPUT_PREFIX))
        # The dashboard is at / and under /dashboard/: its own sign-in, sessions and CSRF
        # checks (dynos/dashboard/guard.py); everything else is the API, token required.
        self.dashboard = Dashboard(platform, token, router_url, app)
        self.app: ASGIApp = WithDashboard(api, self.dashboard.app)


class WithDashboard:
    def __init__(self, api: ASGIApp, dashboard: ASGIApp) -> None:
        self._api = api
        self._dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        # "/" only leads a browser to the dashboard: other methods there get the API's 405.
        root = path == "/" and scope.get("method") in ("GET", "HEAD")
        if scope["type"] == "http" and (
            root or path == DASHBOARD or path.startswith(DASHBOARD + "/")
        ):
            await self._dashboard(scope, receive, send)
            return
        await self._api(scope, receive, send)


def metrics_routes(metrics: CollectorRegistry | None) -> list[BaseRoute]:
    async def get_metrics(request: Request) -> Response:
        """Prometheus text format. Async on purpose: the router's counters live on this
        loop's thread, and a threadpool endpoint would read them from another."""
        if metrics is None:
            raise NotFound("This server has no router metrics.")
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", get_metrics)]
