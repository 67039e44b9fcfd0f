"""Deploys: ``POST /apps/{app}/deploys`` with the app directory as a ``.tar.gz``.

The answer streams as NDJSON: ``{"output": line}`` for each line of the build, and of the
release phase when the Procfile has one; then ``{"release": ...}`` once the release is live,
or ``{"error": {"id", "message"}}`` when the build (``build_failed``) or the release phase
(``release_failed``: the release before keeps serving) failed. A blank line now and then
while a release command is silent keeps the connection alive; clients skip it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dynos.api.params import media_type
from dynos.api.releases import release_json
from dynos.errors import BadRequest, DynosError, UnsupportedMediaType, UserError
from dynos.platform.build import Slug
from dynos.platform.models import App
from dynos.platform.platform import Platform
from dynos.platform.release_phase import Heartbeat

MAX_UPLOAD = 500 * 1024 * 1024  # Heroku's slug size limit
GZIP_TYPES = ("application/gzip", "application/x-gzip")


def deploy_routes(platform: Platform) -> list[BaseRoute]:
    async def deploy(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        await platform.releases.check_can_release(app)  # before a long upload and build
        kind, _ = media_type(request.headers.get("content-type"))
        if kind not in GZIP_TYPES:
            raise UnsupportedMediaType(
                "Send the app directory as a .tar.gz with 'Content-Type: application/gzip' "
                "(as 'dynos deploy' does). Nothing was changed."
            )
        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as upload:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise UserError("The app directory is over 500 MB compressed: slim it down.")
                upload.write(chunk)
            upload.flush()
            if size == 0:
                raise BadRequest("Send the app directory as a .tar.gz request body.")
            slug = await platform.releases.unpack(Path(upload.name))
        stream = deploy_stream(app, slug, str(request.base_url))
        return StreamingResponse(stream, media_type="application/x-ndjson")

    async def deploy_stream(app: App, slug: Slug, base_url: str) -> AsyncIterator[bytes]:
        try:
            async for item in platform.releases.deploy(app, slug):
                if isinstance(item, str):
                    yield _ndjson({"output": item})
                elif isinstance(item, Heartbeat):
                    yield b"\n"  # a long quiet release command: the client skips it
                else:
                    shaped = await release_json(platform, app, item, base_url)
                    yield _ndjson({"release": shaped})
        except DynosError as exc:
            yield _ndjson({"error": exc.to_json()})

    return [Route("/apps/{app}/deploys", deploy, methods=["POST"])]


def _ndjson(value: object) -> bytes:
    return (json.dumps(value) + "\n").encode()
