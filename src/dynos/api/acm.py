"""Automatic Certificate Management: ``/apps/{app}/acm``.

As the Platform API's app ``Enable ACM`` (POST), ``Disable ACM`` (DELETE) and ``Refresh ACM``
(PATCH), each answering the app (its ``acm`` flag): what the heroku CLI's
``certs:auto:enable``, ``certs:auto:disable`` and ``certs:auto:refresh`` send. ``GET`` is
dynos' own: the status of each of the app's hosts (Heroku shows it on each domain, as
``acm_status`` and ``acm_status_reason``) and the certificate's names and dates, which
``dynos certs:auto`` prints.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.apps import app_shape
from dynos.api.lists import JSON
from dynos.api.params import json_object
from dynos.api.shapes import timestamp
from dynos.core.acm import RenewalPolicy, renewal_time
from dynos.errors import Unavailable, UserError
from dynos.platform.acm import Acm, AcmView
from dynos.platform.platform import Platform


def acm_routes(platform: Platform, router_url: str, git_url: str = "") -> list[BaseRoute]:
    def acm() -> Acm:
        if platform.acm is None:
            raise Unavailable(
                "This server does not run Automatic Certificate Management: start it with "
                "'dynos server' (see --acme-directory)."
            )
        return platform.acm

    async def enable(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        await json_object(request, allow_empty=True)  # Heroku's CLI sends {}
        await acm().enable(app)
        return JSONResponse(await app_shape(platform, router_url, app, git_url))

    async def disable(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        await acm().disable(app)
        return JSONResponse(await app_shape(platform, router_url, app, git_url))

    async def refresh(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request, allow_empty=True)
        if body.get("acm_refresh", True) is not True:
            raise UserError("acm_refresh must be true: it asks for a new certificate now.")
        await acm().refresh(app)
        return JSONResponse(await app_shape(platform, router_url, app, git_url))

    async def status(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        view = await acm().view(app)
        return JSONResponse(status_json(view, acm().policy))

    return [
        Route("/apps/{app}/acm", enable, methods=["POST"]),
        Route("/apps/{app}/acm", disable, methods=["DELETE"]),
        Route("/apps/{app}/acm", refresh, methods=["PATCH"]),
        Route("/apps/{app}/acm", status, methods=["GET"]),
    ]


def status_json(view: AcmView, policy: RenewalPolicy) -> JSON:
    record = view.record
    certificate = None
    if record is not None and record.not_before and record.not_after and record.hosts:
        certificate = {
            "cert_domains": list(record.hosts),
            "starts_at": timestamp(record.not_before),
            "expires_at": timestamp(record.not_after),
            "renews_at": timestamp(renewal_time(record.not_before, record.not_after, policy)),
        }
    return {
        "acm": record is not None,
        "acm_status": str(record.status) if record else None,
        "acm_status_reason": record.reason if record else None,
        "certificate": certificate,
        "domains": [
            {
                "hostname": host.hostname,
                "acm_status": host.acm_status,
                "acm_status_reason": host.acm_status_reason,
                "updated_at": timestamp(host.updated_at),
            }
            for host in view.hosts
        ],
    }
