"""The HTTP API: Heroku Platform API v3 routes (and dynos' deploy upload) over Starlette.

Handlers stay thin: read the request, call a use-case on the Platform, shape the answer with
:mod:`dynos.api.shapes`. Every DynosError becomes Heroku's ``{"id", "message"}`` error body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dynos.api import shapes
from dynos.api.log_sessions import MAX_LINES, LogSession, LogSessions
from dynos.core.scale import ScaleChange, parse_quantity
from dynos.core.sizes import find_size
from dynos.errors import BadRequest, DynosError, NotFound, Unauthorized, UserError
from dynos.platform.build import Slug, unpack_slug
from dynos.platform.platform import Platform
from dynos.store.models import App, Release

MAX_UPLOAD = 500 * 1024 * 1024  # Heroku's slug size limit


class Api:
    def __init__(self, platform: Platform, token: str, *, router_url: str, api_url: str) -> None:
        self.platform = platform
        self.store = platform.store
        self.token = token
        self.router_url = router_url  # "http://{app}.localhost:5000/" with {app} to fill in
        self.api_url = api_url
        self.log_sessions = LogSessions(platform.logs)
        self.app: ASGIApp = self._build()

    def _build(self) -> ASGIApp:
        r = Route
        routes = [
            r("/account", self.get_account),
            r("/apps", self.list_apps),
            r("/users/{user}/apps", self.list_apps),
            r("/apps", self.create_app, methods=["POST"]),
            r("/apps/{app}", self.get_app),
            r("/apps/{app}", self.update_app, methods=["PATCH"]),
            r("/apps/{app}", self.destroy_app, methods=["DELETE"]),
            r("/apps/{app}/releases", self.list_releases),
            r("/apps/{app}/releases/{release}", self.get_release),
            r("/apps/{app}/formation", self.list_formation),
            r("/apps/{app}/formation", self.batch_update_formation, methods=["PATCH"]),
            r("/apps/{app}/formation/{type}", self.get_formation),
            r("/apps/{app}/formation/{type}", self.update_formation, methods=["PATCH"]),
            r("/apps/{app}/dynos", self.list_dynos),
            r("/apps/{app}/dynos", self.restart_dynos, methods=["DELETE"]),
            r("/apps/{app}/dynos/{dyno}", self.get_dyno),
            r("/apps/{app}/dynos/{dyno}", self.restart_dynos, methods=["DELETE"]),
            r("/apps/{app}/dynos/{dyno}/actions/stop", self.stop_dynos, methods=["POST"]),
            r("/apps/{app}/config-vars", self.get_config),
            r("/apps/{app}/config-vars", self.update_config, methods=["PATCH"]),
            r("/apps/{app}/log-sessions", self.create_log_session, methods=["POST"]),
            r("/log-sessions/{session}", self.stream_log_session),
            r("/apps/{app}/deploys", self.deploy, methods=["POST"]),
            r("/dyno-sizes", self.list_sizes),
            r("/dyno-sizes/{size}", self.get_size),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={DynosError: _dynos_error, HTTPException: _http_error},
        )
        return _BearerAuth(app, self.token, open_prefixes=("/log-sessions/",))

    # -- helpers -------------------------------------------------------------------------

    def _app(self, request: Request) -> App:
        return self.store.get_app(request.path_params["app"])

    def _app_json(self, app: App) -> dict[str, Any]:
        release = self.store.current_release(app.id)
        return shapes.app(
            app,
            self.platform.account,
            self.router_url.format(app=app.name),
            release.created_at if release else None,
        )

    def _release_json(self, app: App, release: Release) -> dict[str, Any]:
        current = self.store.current_release(app.id)
        is_current = current is not None and current.id == release.id
        return shapes.release(release, app, self.platform.account, is_current)

    def _formation_json(self, app: App) -> list[dict[str, Any]]:
        release = self.store.current_release(app.id)
        processes = release.processes if release else {}
        return [
            shapes.formation(f, app, processes.get(f.type, ""))
            for f in self.store.formation(app.id)
        ]

    # -- account and apps --------------------------------------------------------------------

    async def get_account(self, request: Request) -> Response:
        apps = self.store.list_apps()
        since = min((a.created_at for a in apps), default=datetime.now(UTC))
        return JSONResponse(shapes.account(self.platform.account, since))

    async def list_apps(self, request: Request) -> Response:
        return JSONResponse([self._app_json(a) for a in self.store.list_apps()])

    async def create_app(self, request: Request) -> Response:
        body = await _json_object(request, allow_empty=True)
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise UserError("The app name must be a string.")
        app = self.platform.create_app(name)
        return JSONResponse(self._app_json(app), status_code=201)

    async def get_app(self, request: Request) -> Response:
        return JSONResponse(self._app_json(self._app(request)))

    async def update_app(self, request: Request) -> Response:
        app = self._app(request)
        body = await _json_object(request)
        name = body.get("name")
        if isinstance(name, str) and name != app.name:
            app = self.platform.rename_app(app, name)
        return JSONResponse(self._app_json(app))

    async def destroy_app(self, request: Request) -> Response:
        app = self._app(request)
        shape = self._app_json(app)
        await self.platform.destroy_app(app)
        return JSONResponse(shape)

    # -- releases ------------------------------------------------------------------------------

    async def list_releases(self, request: Request) -> Response:
        app = self._app(request)
        releases = self.store.list_releases(app.id)
        return JSONResponse([self._release_json(app, r) for r in releases])

    async def get_release(self, request: Request) -> Response:
        app = self._app(request)
        release = self.store.get_release(app.id, request.path_params["release"])
        return JSONResponse(self._release_json(app, release))

    # -- formation -------------------------------------------------------------------------

    async def list_formation(self, request: Request) -> Response:
        return JSONResponse(self._formation_json(self._app(request)))

    async def get_formation(self, request: Request) -> Response:
        app = self._app(request)
        self.platform.formation_entry(app, request.path_params["type"])
        entry = [f for f in self._formation_json(app) if f["type"] == request.path_params["type"]]
        return JSONResponse(entry[0])

    async def batch_update_formation(self, request: Request) -> Response:
        app = self._app(request)
        body = await _json_object(request)
        updates = body.get("updates")
        if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
            raise UserError('Send {"updates": [{"type": "web", "quantity": 2}, ...]}.')
        changes = [_scale_change(u.get("type"), u) for u in updates]
        changed = {f.type for f in self.platform.scale(app, changes)}
        return JSONResponse([f for f in self._formation_json(app) if f["type"] in changed])

    async def update_formation(self, request: Request) -> Response:
        app = self._app(request)
        type_ = request.path_params["type"]
        self.platform.scale(app, [_scale_change(type_, await _json_object(request))])
        entry = [f for f in self._formation_json(app) if f["type"] == type_]
        return JSONResponse(entry[0])

    # -- dynos --------------------------------------------------------------------------------

    async def list_dynos(self, request: Request) -> Response:
        app = self._app(request)
        return JSONResponse([shapes.dyno(d) for d in self.platform.manager.dynos(app.id)])

    async def get_dyno(self, request: Request) -> Response:
        app = self._app(request)
        dyno = self.platform.manager.find_dyno(app.id, request.path_params["dyno"])
        return JSONResponse(shapes.dyno(dyno))

    async def restart_dynos(self, request: Request) -> Response:
        app = self._app(request)
        self.platform.manager.request_restart(app.id, request.path_params.get("dyno"))
        self.platform.logs.emit(app.name, "app", "api", "Restart by user " + self._email)
        return JSONResponse({}, status_code=202)

    async def stop_dynos(self, request: Request) -> Response:
        app = self._app(request)
        target = request.path_params["dyno"]
        self.platform.manager.request_restart(app.id, target)
        self.platform.logs.emit(app.name, "app", "api", f"Stop {target} by user {self._email}")
        return JSONResponse({}, status_code=202)

    @property
    def _email(self) -> str:
        return self.platform.account.email

    # -- config vars ---------------------------------------------------------------------------

    async def get_config(self, request: Request) -> Response:
        return JSONResponse(self.platform.config(self._app(request)))

    async def update_config(self, request: Request) -> Response:
        app = self._app(request)
        return JSONResponse(self.platform.update_config(app, await _json_object(request)))

    # -- logs ---------------------------------------------------------------------------------

    async def create_log_session(self, request: Request) -> Response:
        app = self._app(request)
        body = await _json_object(request, allow_empty=True)
        lines = body.get("lines", 100)
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
            raise UserError("lines must be a whole number of log lines, e.g. 100.")
        session = self.log_sessions.create(
            LogSession(
                app=app.name,
                lines=min(lines, MAX_LINES),
                tail=bool(body.get("tail", False)),
                dyno=_optional_str(body, "dyno"),
                source=_optional_str(body, "source"),
            )
        )
        now = shapes.timestamp(datetime.now(UTC))
        return JSONResponse(
            {
                "id": session.id,
                "logplex_url": f"{self.api_url}/log-sessions/{session.id}",
                "created_at": now,
                "updated_at": now,
            },
            status_code=201,
        )

    async def stream_log_session(self, request: Request) -> Response:
        session = self.log_sessions.get(request.path_params["session"])
        if session is None:
            raise NotFound("This log session has expired: run 'dynos logs' again.")
        return StreamingResponse(
            self.log_sessions.stream(session), media_type="text/plain; charset=utf-8"
        )

    # -- deploys ------------------------------------------------------------------------------

    async def deploy(self, request: Request) -> Response:
        app = self._app(request)
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
            # Unpacking a large tarball takes a while: keep the event loop serving meanwhile.
            slug = await asyncio.to_thread(unpack_slug, Path(upload.name), self.platform.slugs_dir)
        return StreamingResponse(self._deploy_stream(app, slug), media_type="application/x-ndjson")

    async def _deploy_stream(self, app: App, slug: Slug) -> AsyncIterator[bytes]:
        try:
            async for item in self.platform.deploy(app, slug):
                if isinstance(item, str):
                    yield _ndjson({"output": item})
                else:
                    yield _ndjson({"release": self._release_json(app, item)})
        except DynosError as exc:
            yield _ndjson({"error": exc.to_json()})

    # -- sizes --------------------------------------------------------------------------------

    async def list_sizes(self, request: Request) -> Response:
        return JSONResponse(shapes.dyno_sizes())

    async def get_size(self, request: Request) -> Response:
        try:
            return JSONResponse(shapes.size_by_name(request.path_params["size"]))
        except UserError as exc:
            raise NotFound(exc.message) from exc


def _scale_change(type_: object, update: dict[str, Any]) -> ScaleChange:
    if not isinstance(type_, str) or not type_:
        raise UserError('Each formation update needs a "type", e.g. {"type": "web"}.')
    size = update.get("size")
    if size is not None and not isinstance(size, str):
        raise UserError(f"Invalid size {size!r} for {type_}: use a name like standard-2X.")
    found = find_size(size) if size else None
    if update.get("quantity") is None:
        if found is None:
            raise UserError(f'Nothing to change for {type_}: send "quantity" and/or "size".')
        return ScaleChange(type_, None, 0, found)
    op, amount = parse_quantity(type_, update["quantity"])
    return ScaleChange(type_, op, amount, found)


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise UserError(f"{key} must be a string.")
    return value


async def _json_object(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and allow_empty:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _ndjson(value: object) -> bytes:
    return (json.dumps(value) + "\n").encode()


async def _dynos_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DynosError)
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    ids = {404: "not_found", 405: "method_not_allowed"}
    message = f"No such endpoint: {request.method} {request.url.path}. See docs/api.md."
    return JSONResponse(
        {"id": ids.get(exc.status_code, "bad_request"), "message": message},
        status_code=exc.status_code,
    )


class _BearerAuth:
    """Every request needs ``Authorization: Bearer <token>``; paths under ``open_prefixes``
    carry their own credential in the URL."""

    def __init__(self, app: ASGIApp, token: str, open_prefixes: tuple[str, ...]) -> None:
        self._app = app
        self._token = token.encode()
        self._open = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self._open):
            await self._app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credential = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self._token):
            await self._app(scope, receive, send)
            return
        error = Unauthorized(
            "Invalid credentials provided: send 'Authorization: Bearer <token>' "
            "(the token is printed by 'dynos auth:token')."
        )
        response = JSONResponse(error.to_json(), status_code=401)
        await response(scope, receive, send)
