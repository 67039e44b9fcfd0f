"""Releases: list them, read one and its config vars, roll back to one, and stream the
output of a release phase.

A release with a release phase has an ``output_stream_url``: ``/release-output/<key>``, the
key a secret of that release alone. The heroku CLI's ``releases:output`` and ``rollback``
fetch that URL as it is, without the API's token (as they fetch Heroku's own stream URLs),
so the URL is its credential, as a log session's is; only an authenticated request for the
release learns it. It answers the output as plain text, live while the command runs, and
ends when the command has ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dynos.api import shapes
from dynos.api.lists import JSON, list_response
from dynos.api.params import json_object
from dynos.errors import NotFound, UserError
from dynos.platform.models import App, Release
from dynos.platform.platform import Platform

# Output URLs carry their own credential: the API's token is not asked for under this path.
OUTPUT_PREFIX = "/release-output/"


def output_url(base_url: str, release: Release) -> str | None:
    if release.output_key is None:
        return None
    return base_url.rstrip("/") + OUTPUT_PREFIX + release.output_key


async def release_json(platform: Platform, app: App, release: Release, base_url: str) -> JSON:
    """``release`` as the API shows it; ``base_url`` is the API's, as the client reached it."""
    current = await platform.releases.current(app)
    is_current = current is not None and current.id == release.id
    url = output_url(base_url, release)
    return shapes.release(release, app, platform.account, is_current, url)


def release_routes(platform: Platform) -> list[BaseRoute]:
    releases = platform.releases

    async def list_all(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        found = await releases.list(app)
        live = await releases.current(app)
        account = platform.account
        base = str(request.base_url)
        shaped = [
            shapes.release(
                r, app, account, live is not None and r.id == live.id, output_url(base, r)
            )
            for r in found
        ]
        return list_response(request, shaped, ("version", "id"))

    async def info(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        release = await releases.get(app, request.path_params["release"])
        return JSONResponse(await release_json(platform, app, release, str(request.base_url)))

    async def output(request: Request) -> Response:
        release = await releases.by_output_key(request.path_params["key"])
        if release is None:
            raise NotFound(
                "No release output at this URL: its app was destroyed, or the URL is wrong. "
                "Run 'releases:output' again."
            )
        return StreamingResponse(
            _output_lines(platform, release),
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def config_vars(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        release = await releases.get(app, request.path_params["release"])
        return JSONResponse(release.config)

    async def roll_back(request: Request) -> Response:
        """``{"release": id_or_version}`` makes a new release of that one's slug and config
        vars. (dynos makes releases of new code only by deploys.)"""
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        target = body.get("release")
        if isinstance(target, int) and not isinstance(target, bool):
            target = str(target)
        if not isinstance(target, str) or not target:
            raise UserError(
                'Send {"release": "<release id or version>"} to roll back to it; new code '
                "is released by a deploy (POST /apps/{app}/deploys)."
            )
        release = await releases.rollback(app, await releases.get(app, target))
        shaped = await release_json(platform, app, release, str(request.base_url))
        return JSONResponse(shaped, status_code=201)

    return [
        Route("/apps/{app}/releases", list_all),
        Route("/apps/{app}/releases", roll_back, methods=["POST"]),
        Route("/apps/{app}/releases/{release}", info),
        Route("/apps/{app}/releases/{release}/config-vars", config_vars),
        Route(OUTPUT_PREFIX + "{key}", output),
    ]


async def _output_lines(platform: Platform, release: Release) -> AsyncIterator[bytes]:
    async for item in platform.releases.phases.follow(release):
        if isinstance(item, str):
            yield (item + "\n").encode()
