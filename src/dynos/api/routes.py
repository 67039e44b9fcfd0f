"""The HTTP API: Heroku Platform API v3 routes (and dynos' extras) over Starlette.

Handlers stay thin: read the request, call a use-case on the Platform, shape the answer with
:mod:`dynos.api.shapes`. Every DynosError becomes Heroku's ``{"id", "message"}`` error body.
Lists page with Heroku's ``Range`` header (:mod:`dynos.api.ranges`). The ``Accept`` header's
variant (``version=3``, ``3.sdk``, ...) does not change any answer.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from dynos.api import shapes
from dynos.api.addons import addon_routes
from dynos.api.app_settings import settings_routes
from dynos.api.auth import BearerAuth
from dynos.api.compat import compat_routes
from dynos.api.log_sessions import MAX_LINES, LogSession, LogSessions
from dynos.api.one_off import one_off_routes
from dynos.api.params import json_object, media_type, optional_str, scale_change
from dynos.api.ranges import DEFAULT_MAX, Range, paginate, parse_range
from dynos.errors import (
    BadRequest,
    DynosError,
    Forbidden,
    NotFound,
    UnsupportedMediaType,
    UserError,
)
from dynos.logs.logline import APP
from dynos.platform.build import Slug
from dynos.platform.platform import Platform
from dynos.platform.slug_archive import unpack_slug
from dynos.store.models import App, Formation, Release

MAX_UPLOAD = 500 * 1024 * 1024  # Heroku's slug size limit
GZIP_TYPES = ("application/gzip", "application/x-gzip")
JSON = dict[str, Any]


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
        self.platform = platform
        self.metrics = metrics  # the router's registry, served at /metrics
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
            r("/users/{user}/apps", self.list_user_apps),
            r("/apps", self.create_app, methods=["POST"]),
            r("/apps/{app}", self.get_app),
            r("/apps/{app}", self.update_app, methods=["PATCH"]),
            r("/apps/{app}", self.destroy_app, methods=["DELETE"]),
            r("/apps/{app}/releases", self.list_releases),
            r("/apps/{app}/releases", self.create_release, methods=["POST"]),
            r("/apps/{app}/releases/{release}", self.get_release),
            r("/apps/{app}/releases/{release}/config-vars", self.get_release_config),
            r("/apps/{app}/formation", self.list_formation),
            r("/apps/{app}/formation", self.batch_update_formation, methods=["PATCH"]),
            r("/apps/{app}/formation/{type}", self.get_formation),
            r("/apps/{app}/formation/{type}", self.update_formation, methods=["PATCH"]),
            r("/apps/{app}/formations/{type}", self.restart_type, methods=["DELETE"]),
            r("/apps/{app}/formations/{type}/actions/stop", self.stop_type, methods=["POST"]),
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
            *settings_routes(self.platform),
            *one_off_routes(self.platform, self.api_url),
            *addon_routes(self.platform),
            *compat_routes(self.platform),
            r("/metrics", self.get_metrics),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={
                DynosError: _dynos_error,
                HTTPException: _http_error,
                Exception: _internal_error,
            },
        )
        return BearerAuth(app, self.token, open_prefixes=("/log-sessions/",))

    async def get_metrics(self, request: Request) -> Response:
        """Prometheus text format. Async on purpose: the router's counters live on this
        loop's thread, and a threadpool endpoint would read them from another."""
        if self.metrics is None:
            raise NotFound("This server has no router metrics.")
        return Response(generate_latest(self.metrics), media_type=CONTENT_TYPE_LATEST)

    # -- helpers -------------------------------------------------------------------------

    async def _app(self, request: Request) -> App:
        return await self.store.get_app(request.path_params["app"])

    async def _app_json(self, app: App) -> JSON:
        release = await self.store.current_release(app.id)
        return shapes.app(
            app,
            self.platform.account,
            self.router_url.format(app=app.name),
            release.created_at if release else None,
        )

    async def _release_json(self, app: App, release: Release) -> JSON:
        current = await self.store.current_release(app.id)
        is_current = current is not None and current.id == release.id
        return shapes.release(release, app, self.platform.account, is_current)

    async def _formation_json(self, app: App) -> list[JSON]:
        release = await self.store.current_release(app.id)
        processes = release.processes if release else {}
        return [
            shapes.formation(f, app, processes.get(f.type, ""))
            for f in await self.store.formation(app.id)
        ]

    async def _formation_entry(self, app: App, type_or_id: str) -> Formation:
        """The formation entry of a process type, by type name or by the entry's id."""
        for entry in await self.store.formation(app.id):
            if type_or_id in (entry.type, entry.id):
                return entry
        return await self.platform.formation_entry(app, type_or_id)  # raises NotFound

    def _api_log(self, app: App, message: str) -> None:
        """An ``app[api]`` log line, as Heroku writes one for each user action."""
        self.platform.logs.emit(app.name, APP, "api", f"{message} by user {self._email}")

    @property
    def _email(self) -> str:
        return self.platform.account.email

    # -- account and apps --------------------------------------------------------------------

    async def get_account(self, request: Request) -> Response:
        apps = await self.store.list_apps()
        since = min((a.created_at for a in apps), default=datetime.now(UTC))
        return JSONResponse(shapes.account(self.platform.account, since))

    async def list_apps(self, request: Request) -> Response:
        apps = [await self._app_json(a) for a in await self.store.list_apps()]
        return list_response(request, apps, ("id", "name"))

    async def list_user_apps(self, request: Request) -> Response:
        user = request.path_params["user"]
        account = self.platform.account
        if user not in ("~", account.id, account.email):
            raise Forbidden(f"You can list only your own apps: use /users/~/apps, not {user}.")
        return await self.list_apps(request)

    async def create_app(self, request: Request) -> Response:
        body = await json_object(request, allow_empty=True)
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise UserError("The app name must be a string.")
        _check_region_and_stack(body)
        app = await self.platform.create_app(name)
        return JSONResponse(await self._app_json(app), status_code=201)

    async def get_app(self, request: Request) -> Response:
        return JSONResponse(await self._app_json(await self._app(request)))

    async def update_app(self, request: Request) -> Response:
        app = await self._app(request)
        body = await json_object(request)
        if body.get("maintenance"):
            raise UserError("dynos has no maintenance mode: scale web to 0 to take an app down.")
        _check_region_and_stack(body, stack_key="build_stack")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise UserError("The app name must be a string.")
        if name is not None and name != app.name:
            app = await self.platform.rename_app(app, name)
        return JSONResponse(await self._app_json(app))

    async def destroy_app(self, request: Request) -> Response:
        app = await self._app(request)
        shape = await self._app_json(app)
        await self.platform.destroy_app(app)
        return JSONResponse(shape)

    # -- releases ------------------------------------------------------------------------------

    async def list_releases(self, request: Request) -> Response:
        app = await self._app(request)
        releases = await self.store.list_releases(app.id)
        newest = releases[-1].id if releases else None
        account = self.platform.account
        shaped = [shapes.release(r, app, account, r.id == newest) for r in releases]
        return list_response(request, shaped, ("version", "id"))

    async def get_release(self, request: Request) -> Response:
        app = await self._app(request)
        release = await self.store.get_release(app.id, request.path_params["release"])
        return JSONResponse(await self._release_json(app, release))

    async def get_release_config(self, request: Request) -> Response:
        app = await self._app(request)
        release = await self.store.get_release(app.id, request.path_params["release"])
        return JSONResponse(release.config)

    async def create_release(self, request: Request) -> Response:
        """Roll back: ``{"release": id_or_version}`` makes a new release of that one's
        slug and config vars. (dynos makes releases of new code only by deploys.)"""
        app = await self._app(request)
        body = await json_object(request)
        target = body.get("release")
        if isinstance(target, int) and not isinstance(target, bool):
            target = str(target)
        if not isinstance(target, str) or not target:
            raise UserError(
                'Send {"release": "<release id or version>"} to roll back to it; new code '
                "is released by a deploy (POST /apps/{app}/deploys)."
            )
        release = await self.platform.rollback(app, await self.store.get_release(app.id, target))
        return JSONResponse(await self._release_json(app, release), status_code=201)

    # -- formation -------------------------------------------------------------------------

    async def list_formation(self, request: Request) -> Response:
        formation = await self._formation_json(await self._app(request))
        return list_response(request, formation, ("id", "type"))

    async def get_formation(self, request: Request) -> Response:
        app = await self._app(request)
        entry = await self._formation_entry(app, request.path_params["type"])
        return JSONResponse(_by_type(await self._formation_json(app), entry.type))

    async def batch_update_formation(self, request: Request) -> Response:
        app = await self._app(request)
        body = await json_object(request)
        updates = body.get("updates")
        if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
            raise UserError('Send {"updates": [{"type": "web", "quantity": 2}, ...]}.')
        changes = [scale_change(await self._type_name(app, u.get("type")), u) for u in updates]
        changed = {f.type for f in await self.platform.scale(app, changes)}
        return JSONResponse([f for f in await self._formation_json(app) if f["type"] in changed])

    async def update_formation(self, request: Request) -> Response:
        app = await self._app(request)
        type_ = await self._type_name(app, request.path_params["type"])
        await self.platform.scale(app, [scale_change(type_, await json_object(request))])
        return JSONResponse(_by_type(await self._formation_json(app), type_))

    async def _type_name(self, app: App, type_or_id: Any) -> Any:
        """A formation update names its process type, or the formation entry's id."""
        for entry in await self.store.formation(app.id):
            if type_or_id == entry.id:
                return entry.type
        return type_or_id

    async def restart_type(self, request: Request) -> Response:
        return await self._restart_type(request, "Restart")

    async def stop_type(self, request: Request) -> Response:
        """Stop every dyno of a type: they start again, as on Heroku (scale to 0 instead)."""
        return await self._restart_type(request, "Stop")

    async def _restart_type(self, request: Request, verb: str) -> Response:
        """Restart (or stop) every dyno of a formation type, or of ``run`` (one-off dynos,
        which are in no formation: naming them stops them)."""
        app = await self._app(request)
        type_or_id = request.path_params["type"]
        running = {d.type for d in self.platform.manager.dynos(app.id)}
        type_ = type_or_id
        if type_or_id not in running:
            type_ = (await self._formation_entry(app, type_or_id)).type  # NotFound for neither
        if type_ in running:
            self.platform.manager.request_restart(app.id, type_)
        self._api_log(app, f"{verb} {type_}")
        return JSONResponse({}, status_code=202)

    # -- dynos --------------------------------------------------------------------------------

    async def list_dynos(self, request: Request) -> Response:
        app = await self._app(request)
        dynos = [shapes.dyno(d) for d in self.platform.manager.dynos(app.id)]
        return list_response(request, dynos, ("id", "name"), {"name": _dyno_order})

    async def get_dyno(self, request: Request) -> Response:
        app = await self._app(request)
        dyno = self.platform.manager.find_dyno(app.id, request.path_params["dyno"])
        return JSONResponse(shapes.dyno(dyno))

    async def restart_dynos(self, request: Request) -> Response:
        app = await self._app(request)
        target = request.path_params.get("dyno")
        self.platform.manager.request_restart(app.id, target)
        self._api_log(app, f"Restart {target}" if target else "Restart")
        return JSONResponse({}, status_code=202)

    async def stop_dynos(self, request: Request) -> Response:
        """Stop a dyno (or every dyno of a type): a formation's dynos start again, as on
        Heroku (scale to 0 to keep them down); a one-off dyno stops for good."""
        app = await self._app(request)
        target = request.path_params["dyno"]
        self.platform.manager.request_restart(app.id, target)
        self._api_log(app, f"Stop {target}")
        return JSONResponse({}, status_code=202)

    # -- config vars ---------------------------------------------------------------------------

    async def get_config(self, request: Request) -> Response:
        return JSONResponse(await self.platform.config(await self._app(request)))

    async def update_config(self, request: Request) -> Response:
        app = await self._app(request)
        changes = await json_object(request)
        return JSONResponse(await self.platform.update_config(app, changes))

    # -- logs ---------------------------------------------------------------------------------

    async def create_log_session(self, request: Request) -> Response:
        app = await self._app(request)
        body = await json_object(request, allow_empty=True)
        lines = body.get("lines", 100)
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
            raise UserError("lines must be a whole number of log lines, e.g. 100.")
        session = self.log_sessions.create(
            LogSession(
                app=app.name,
                lines=min(lines, MAX_LINES),
                tail=bool(body.get("tail", False)),
                dyno=optional_str(body, "dyno"),
                source=optional_str(body, "source"),
            )
        )
        # The URL the client reached us by: right behind a proxy or on a public address.
        url = str(request.base_url).rstrip("/") + f"/log-sessions/{session.key}"
        shape = shapes.log_session(session.id, url, datetime.now(UTC))
        return JSONResponse(shape, status_code=201)

    async def stream_log_session(self, request: Request) -> Response:
        session = self.log_sessions.get(request.path_params["session"])
        if session is None:
            raise NotFound("This log session has expired: run 'logs' again.")
        events = "text/event-stream" in request.headers.get("accept", "")
        kind = "text/event-stream" if events else "text/plain; charset=utf-8"
        return StreamingResponse(
            self.log_sessions.stream(session, events=events),
            media_type=kind,
            headers={"Cache-Control": "no-cache"},
        )

    # -- deploys ------------------------------------------------------------------------------

    async def deploy(self, request: Request) -> Response:
        app = await self._app(request)
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
            # Unpacking a large tarball takes a while: keep the event loop serving meanwhile.
            slug = await asyncio.to_thread(
                unpack_slug,
                Path(upload.name),
                self.platform.slugs_dir,
                self.platform.unpack_limits,
            )
        return StreamingResponse(self._deploy_stream(app, slug), media_type="application/x-ndjson")

    async def _deploy_stream(self, app: App, slug: Slug) -> AsyncIterator[bytes]:
        try:
            async for item in self.platform.deploy(app, slug):
                if isinstance(item, str):
                    yield _ndjson({"output": item})
                else:
                    yield _ndjson({"release": await self._release_json(app, item)})
        except DynosError as exc:
            yield _ndjson({"error": exc.to_json()})

    # -- sizes --------------------------------------------------------------------------------

    async def list_sizes(self, request: Request) -> Response:
        return list_response(request, shapes.dyno_sizes(), ("id", "name"))

    async def get_size(self, request: Request) -> Response:
        try:
            return JSONResponse(shapes.size_by_name_or_id(request.path_params["size"]))
        except UserError as exc:
            raise NotFound(exc.message) from exc


def list_response(
    request: Request,
    items: list[JSON],
    fields: Sequence[str],
    sort_keys: dict[str, Callable[[Any], Any]] | None = None,
) -> Response:
    """A list, paged by the request's Range header: 206 and Next-Range while more remain.

    Without a Range header the whole list comes in the endpoint's own order (up to
    DEFAULT_MAX items, then pages by the first of ``fields``).
    """
    headers = {"Accept-Ranges": ", ".join(fields)}
    wanted = parse_range(request.headers.get("range"), fields)
    if wanted is None:
        if len(items) <= DEFAULT_MAX:
            return JSONResponse(items, headers=headers)
        wanted = Range(fields[0])
    page = paginate(items, wanted, sort_keys)
    if page.content_range is not None:
        headers["Content-Range"] = page.content_range
    if page.next_range is None:
        return JSONResponse(page.items, headers=headers)
    headers["Next-Range"] = page.next_range.header()
    return JSONResponse(page.items, status_code=206, headers=headers)


def _dyno_order(name: str) -> tuple[str, int, str]:
    """Dyno names sort by type, then number: web.2 before web.10."""
    type_, _, number = name.partition(".")
    digits = number.isascii() and number.isdigit()  # "²" is a digit that int() refuses
    return (type_, int(number), "") if digits else (type_, -1, number)


def _by_type(formation: list[JSON], type_: str) -> JSON:
    return next(f for f in formation if f["type"] == type_)


def _check_region_and_stack(body: dict[str, Any], stack_key: str = "stack") -> None:
    """dynos has one region and one stack; asking for another is an error, not ignored."""
    region, stack = body.get("region"), body.get(stack_key)
    if region not in (None, shapes.REGION["name"], shapes.REGION["id"]):
        raise UserError(f"Unknown region {region!r}: dynos has one region, local.")
    if stack not in (None, shapes.STACK["name"], shapes.STACK["id"]):
        raise UserError(f"Unknown stack {stack!r}: dynos has one stack, {shapes.STACK['name']}.")


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


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug, not the client's doing: the answer keeps Heroku's error shape (the traceback
    goes to the server's log, where Starlette sends it)."""
    error = DynosError(
        "The dynos server failed on this request (see its log): it may have been applied "
        "or not; check before you retry."
    )
    return JSONResponse(error.to_json(), status_code=500)
