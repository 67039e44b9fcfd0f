"""``/apps/{app}/sni-endpoints``: an app's own TLS certificates (the Platform API's
SNI endpoints; the heroku CLI's ``certs``, ``certs:add``, ``certs:info``, ``certs:update``,
``certs:remove``), and ``/tls/ca``, dynos' extra: where the platform CA is.

``POST`` and ``PATCH`` take ``certificate_chain`` and ``private_key`` (PEM); a certificate
that cannot serve the app is refused with 422 saying why (platform/certificates.py). The
private key is never part of an answer.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dynos.api.lists import list_response
from dynos.api.params import json_object
from dynos.api.shapes import timestamp
from dynos.core.certificates import CertificateSource
from dynos.errors import NotFound, UserError
from dynos.platform.certificates import Certificates
from dynos.platform.models import App, SniEndpoint
from dynos.platform.platform import Platform


def sni_routes(platform: Platform) -> list[BaseRoute]:
    def certificates() -> Certificates:
        if platform.certificates is None:
            raise NotFound("This server serves no HTTPS: it has no certificates.")
        return platform.certificates

    async def domain_ids(app: App) -> dict[str, list[str]]:
        """Endpoint id -> the ids of the app's domains it serves."""
        serving = certificates().serving(app)
        served: dict[str, list[str]] = {}
        for domain in await platform.domains.of_app(app):
            endpoint = serving.get(domain.hostname)
            if endpoint is not None:
                served.setdefault(endpoint.id, []).append(domain.id)
        return served

    def shape(app: App, endpoint: SniEndpoint, served: dict[str, list[str]]) -> dict[str, Any]:
        facts = certificates().facts(endpoint)
        return {
            "id": endpoint.id,
            "name": endpoint.name,
            "display_name": None,
            "certificate_chain": endpoint.certificate_chain,
            "created_at": timestamp(endpoint.created_at),
            "updated_at": timestamp(endpoint.updated_at),
            "domains": served.get(endpoint.id, []),  # the ids of the domains it serves
            "app": {"id": app.id, "name": app.name},
            "ssl_cert": {
                "id": endpoint.id,
                "ca_signed?": facts.ca_signed,
                "self_signed?": facts.self_signed,
                "cert_domains": list(facts.names),
                "starts_at": timestamp(facts.not_before),
                "expires_at": timestamp(facts.not_after),
                "issuer": facts.issuer,
                "subject": facts.subject,
                "acm": endpoint.source == CertificateSource.ACM,  # certs:auto's, renewed by it
            },
        }

    async def pem_fields(request: Request) -> tuple[str, str]:
        body = await json_object(request)
        chain, key = body.get("certificate_chain"), body.get("private_key")
        if not isinstance(chain, str) or not isinstance(key, str):
            raise UserError(
                "Pass certificate_chain and private_key, each the PEM text of its file."
            )
        return chain, key

    async def create(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        chain, key = await pem_fields(request)
        endpoint = await certificates().install(app, chain, key)
        return JSONResponse(shape(app, endpoint, await domain_ids(app)), status_code=201)

    async def list_endpoints(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        served = await domain_ids(app)
        found = [shape(app, e, served) for e in await certificates().list(app)]
        return list_response(request, found, ("id", "name"))

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        endpoint = await certificates().get(app, request.path_params["endpoint"])
        return JSONResponse(shape(app, endpoint, await domain_ids(app)))

    async def update(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        endpoint = await certificates().get(app, request.path_params["endpoint"])
        chain, key = await pem_fields(request)
        updated = await certificates().install(app, chain, key, replace=endpoint)
        return JSONResponse(shape(app, updated, await domain_ids(app)))

    async def remove(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        endpoint = await certificates().get(app, request.path_params["endpoint"])
        answer = shape(app, endpoint, await domain_ids(app))
        await certificates().remove(endpoint)
        return JSONResponse(answer)

    async def ca(request: Request) -> Response:
        keeper = certificates()
        return JSONResponse(
            {"path": str(keeper.ca_path), "certificate": keeper.authority.pem.decode()}
        )

    return [
        Route("/apps/{app}/sni-endpoints", list_endpoints),
        Route("/apps/{app}/sni-endpoints", create, methods=["POST"]),
        Route("/apps/{app}/sni-endpoints/{endpoint}", info),
        Route("/apps/{app}/sni-endpoints/{endpoint}", update, methods=["PATCH"]),
        Route("/apps/{app}/sni-endpoints/{endpoint}", remove, methods=["DELETE"]),
        Route("/tls/ca", ca),
    ]
