"""``/apps/{app}/domains``: an app's own hostname and its custom domains (Platform API
``domain``). A domain is named by its id or its hostname, in any case.

``POST`` takes ``{"hostname": ..., "sni_endpoint": null}`` (the heroku CLI always sends
``sni_endpoint``); ``PATCH`` takes ``{"sni_endpoint": ...}``. A non-null ``sni_endpoint`` is
the name or id of one of the app's certificates (sni-endpoints) that covers the hostname: the
router serves the domain with it. Each domain answers with the certificate that serves it
(``sni_endpoint``: ``{id, name}``, null for the platform's) and its ACM status.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.api.lists import JSON, list_response
from dynos.api.params import json_object
from dynos.core.acm import domain_status
from dynos.errors import UserError
from dynos.platform.models import App, Domain
from dynos.platform.platform import Platform


def domain_routes(platform: Platform) -> list[BaseRoute]:
    domains = platform.domains

    async def shaper(app: App) -> Callable[[Domain], JSON]:
        """Shapes the app's domains, each with its ACM status (one look at the store) and
        the certificate that serves it."""
        record = await platform.acm.record(app) if platform.acm is not None else None
        keeper = platform.certificates
        serving = keeper.serving(app) if keeper is not None else {}

        def shape(domain: Domain) -> JSON:
            acm = domain_status(record, domain.hostname)
            endpoint = serving.get(domain.hostname)
            return shapes.domain(domain, app, domains.own_hostname(app), acm, endpoint)

        return shape

    async def list_domains(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        shape = await shaper(app)
        items = [shape(domain) for domain in await domains.of_app(app)]
        return list_response(request, items, ("id", "hostname"))

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        domain = await domains.get(app, request.path_params["domain"])
        return JSONResponse((await shaper(app))(domain))

    async def create(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        if "hostname" not in body:
            raise UserError('A domain needs a hostname: send {"hostname": "www.example.com"}.')
        domain = await domains.add(app, body["hostname"], body.get("sni_endpoint"))
        return JSONResponse((await shaper(app))(domain), status_code=201)

    async def update(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        if "sni_endpoint" not in body:
            raise UserError(
                'Send the certificate the domain should use: {"sni_endpoint": "NAME"} (a '
                "name from certs), or null for the one dynos picks."
            )
        identity = request.path_params["domain"]
        domain = await domains.choose_certificate(app, identity, body["sni_endpoint"])
        return JSONResponse((await shaper(app))(domain))

    async def remove(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        removed = await domains.remove(app, request.path_params["domain"])
        return JSONResponse((await shaper(app))(removed))

    return [
        Route("/apps/{app}/domains", list_domains),
        Route("/apps/{app}/domains", create, methods=["POST"]),
        Route("/apps/{app}/domains/{domain}", info),
        Route("/apps/{app}/domains/{domain}", update, methods=["PATCH"]),
        Route("/apps/{app}/domains/{domain}", remove, methods=["DELETE"]),
    ]
