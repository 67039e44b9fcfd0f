"""The web dashboard: pages at ``/dashboard/``, served by the API's server (``/`` leads here).

Pages are rendered here (Jinja2, autoescaped); the scripts under ``static/`` refresh the
dynos, tail the log and draw the metrics with uPlot, through the JSON routes below. Every
route but sign-in and the static files needs a session (guard.py), and reaches dynos only
through the platform's use-cases, as the API's handlers do.
"""

from __future__ import annotations

import functools
import hmac
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynos.api.errors import CatchAll
from dynos.api.formation import scale_warnings
from dynos.api.log_sessions import LogSession, LogSessions
from dynos.api.params import scale_change
from dynos.dashboard import views
from dynos.dashboard.guard import (
    SAFE_METHODS,
    SECURITY_HEADERS,
    Guard,
    check_csrf,
    check_origin,
    client_address,
)
from dynos.errors import DynosError, Unauthorized, UserError
from dynos.platform.platform import Platform

if TYPE_CHECKING:
    import httpx
    from jinja2 import Environment

PREFIX = "/dashboard"
STATIC = Path(__file__).parent / "static"
UPLOT = STATIC / "vendor" / "uPlot.iife.min.js"  # built at install (setup.py)
WINDOWS = ("1h", "6h", "24h", "7d")
PROCESS_TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_FORM = 16 * 1024  # bytes: the dashboard's forms are small


class Dashboard:
    def __init__(self, platform: Platform, token: str, router_url: str, api: ASGIApp) -> None:
        """``api``: the API's routes, unauthenticated, which the metrics route asks in
        process (the session stands for the token)."""
        self.platform = platform
        self._token = token.encode()
        self.router_url = router_url
        self.guard = Guard()
        self._api_app = api
        self._logs = LogSessions(platform.logs)
        routes: list[BaseRoute] = [
            Route("/", self.root),
            Route(PREFIX, self.root),
            Route(PREFIX + "/", self.apps),
            Route(PREFIX + "/sign-in", self.sign_in_page),
            Route(PREFIX + "/sign-in", self.sign_in, methods=["POST"]),
            Route(PREFIX + "/sign-out", self.sign_out, methods=["POST"]),
            Route(PREFIX + "/apps/{app}", self.app_page),
            Route(PREFIX + "/apps/{app}/formation", self.scale, methods=["POST"]),
            Route(PREFIX + "/apps/{app}/rollback", self.roll_back, methods=["POST"]),
            Route(PREFIX + "/apps/{app}/processes.json", self.processes),
            Route(PREFIX + "/apps/{app}/config-var.json", self.config_var),
            Route(PREFIX + "/apps/{app}/metrics.json", self.metrics),
            Route(PREFIX + "/apps/{app}/log-stream", self.log_stream),
            Mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="static"),
        ]
        self.routes = routes  # what the dashboard answers: tests walk it
        self.app: ASGIApp = SecurityHeaders(
            Starlette(
                routes=routes,
                # A bug answers the API's JSON 500 with a request id, its traceback logged.
                middleware=[Middleware(CatchAll)],
                exception_handlers={DynosError: self.error, HTTPException: self.http_error},
            )
        )

    # jinja2 and httpx (0.1-0.15 s of imports) are loaded by the first page and the first
    # metrics request: every server makes a Dashboard, few are ever looked at.

    @functools.cached_property
    def templates(self) -> Environment:
        from jinja2 import Environment, PackageLoader, select_autoescape

        return Environment(
            loader=PackageLoader("dynos.dashboard", "templates"),
            autoescape=select_autoescape(default=True),
        )

    @functools.cached_property
    def _api(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._api_app), base_url="http://dashboard.internal"
        )

    # -- pages -----------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        session = self.guard.session(request)
        page = self.templates.get_template(name).render(
            csrf=session.csrf if session else "",
            signed_in=session is not None,
            flash=session.take_flash() if session else [],
            has_uplot=UPLOT.exists(),
            prefix=PREFIX,
            **context,
        )
        return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})

    async def root(self, request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=303)

    async def apps(self, request: Request) -> Response:
        self.guard.require(request)
        summaries = await views.app_summaries(self.platform, self.router_url)
        return self.render(request, "apps.html", apps=summaries)

    async def app_page(self, request: Request) -> Response:
        self.guard.require(request)
        app = await self.platform.get_app(request.path_params["app"])
        page = await views.app_page(self.platform, app, self.router_url)
        return self.render(request, "app.html", windows=WINDOWS, **page)

    async def sign_in_page(self, request: Request) -> Response:
        if self.guard.session(request) is not None:
            return RedirectResponse(PREFIX + "/", status_code=303)
        return self.render(request, "sign_in.html")

    # -- sign-in and out -------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        check_origin(request)  # no signing a victim in to an attacker's session either
        address = client_address(request)
        wait = self.guard.throttle.wait(address, self.guard.clock())
        if wait > 0:
            minutes = math.ceil(wait / 60)
            message = f"Too many failed sign-ins from your address: try again in {minutes} min."
            response = self.render(request, "sign_in.html", status=429, error=message)
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        form = await read_form(request)
        given = form.get("token", "").strip().encode()
        if not given or not hmac.compare_digest(given, self._token):
            self.guard.throttle.failed(address, self.guard.clock())
            message = "That is not this server's API token: 'dynos auth:token' prints it."
            return self.render(request, "sign_in.html", status=401, error=message)
        self.guard.throttle.succeeded(address)
        response = RedirectResponse(PREFIX + "/", status_code=303)
        self.guard.sign_in(response, request)
        return response

    async def sign_out(self, request: Request) -> Response:
        check_csrf(self.guard.require(request), (await read_form(request)).get("csrf"))
        response = RedirectResponse(PREFIX + "/sign-in", status_code=303)
        self.guard.sign_out(response, request)
        return response

    # -- actions: a form POST, then back to the app's page ----------------------------------

    async def scale(self, request: Request) -> Response:
        session = self.guard.require(request)
        form = await read_form(request)
        check_csrf(session, form.get("csrf"))
        app = await self.platform.get_app(request.path_params["app"])
        type_ = form.get("type", "")
        update = {"quantity": form.get("quantity") or None, "size": form.get("size") or None}
        try:
            change = scale_change(type_, update)
            await self.platform.dynos.scale(app, [change])
        except UserError as exc:
            session.flash.append(exc.message)
        else:
            session.flash.append(f"Scaled {type_}.")
            session.flash.extend(await scale_warnings(self.platform, app, [change]))
        return RedirectResponse(f"{PREFIX}/apps/{app.name}", status_code=303)

    async def roll_back(self, request: Request) -> Response:
        session = self.guard.require(request)
        form = await read_form(request)
        check_csrf(session, form.get("csrf"))
        app = await self.platform.get_app(request.path_params["app"])
        releases = self.platform.releases
        try:
            target = await releases.get(app, form.get("release", ""))
            release = await releases.rollback(app, target)
        except UserError as exc:
            session.flash.append(exc.message)
        else:
            session.flash.append(f"Rolled back to v{target.version}: now v{release.version}.")
        return RedirectResponse(f"{PREFIX}/apps/{app.name}#releases", status_code=303)

    # -- the scripts' reads ------------------------------------------------------------------

    async def processes(self, request: Request) -> Response:
        self.guard.require_script(request)
        app = await self.platform.get_app(request.path_params["app"])
        return JSONResponse(await views.processes(self.platform, app))

    async def config_var(self, request: Request) -> Response:
        """One config var's value, asked for by name: the page lists only the names."""
        self.guard.require_script(request)
        app = await self.platform.get_app(request.path_params["app"])
        name = request.query_params.get("name", "")
        config = await self.platform.releases.config(app)
        if name not in config:
            raise UserError(f"{app.name} has no config var {name[:100]!r}.")
        return JSONResponse({"name": name, "value": config[name]}, headers=NO_STORE)

    async def metrics(self, request: Request) -> Response:
        """The API's ``GET /apps/{app}/metrics``, asked in process for the signed-in user."""
        self.guard.require_script(request)
        app = await self.platform.get_app(request.path_params["app"])
        process_type = request.query_params.get("process_type", "web")
        window = request.query_params.get("window", "1h")
        if not PROCESS_TYPE.fullmatch(process_type) or window not in WINDOWS:
            raise UserError(f"Ask for a process type and a window of {', '.join(WINDOWS)}.")
        answer = await self._api.get(
            f"/apps/{app.name}/metrics",
            params={"process_type": process_type, "window": window},
        )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type="application/json",
            headers=NO_STORE,
        )

    async def log_stream(self, request: Request) -> Response:
        """The app's recent log lines, then each new one, as Server-Sent Events: the stream
        an API log session gives, read by the page with fetch (which, unlike EventSource,
        sends the CSRF header)."""
        self.guard.require_script(request)
        app = await self.platform.get_app(request.path_params["app"])
        session = self._logs.create(
            LogSession(app=app.name, lines=100, tail=True, dyno=None, source=None)
        )
        return StreamingResponse(
            self._logs.stream(session, events=True),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    # -- errors ------------------------------------------------------------------------------

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DynosError)
        if wants_json(request):
            return JSONResponse(exc.to_json(), status_code=exc.status)
        if isinstance(exc, Unauthorized) and request.method in SAFE_METHODS:
            return RedirectResponse(PREFIX + "/sign-in", status_code=303)
        return self.render(request, "error.html", status=exc.status, message=exc.message)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = f"No such dashboard page: {request.method} {request.url.path}."
        if wants_json(request):
            return JSONResponse({"id": "not_found", "message": message}, exc.status_code)
        return self.render(request, "error.html", status=exc.status_code, message=message)


NO_STORE = {"Cache-Control": "no-store"}


def wants_json(request: Request) -> bool:
    path = request.url.path
    return path.endswith(".json") or path.endswith("/log-stream")


async def read_form(request: Request) -> dict[str, str]:
    """A form POST's fields (the last of each name). A body that is not an urlencoded form,
    or larger than any of the dashboard's forms, is refused, and read no further."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise UserError("Send the dashboard's forms as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise UserError("This form is too large: nothing was changed.")
    try:
        fields = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError("This form could not be read: nothing was changed.") from exc
    return dict(fields)


class SecurityHeaders:
    """Adds the CSP and its companions (guard.py) to every answer of the dashboard."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, add_headers)
