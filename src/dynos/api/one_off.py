"""One-off dynos over the API: Heroku's Dyno Create, and the WebSocket that attaches to one.

``POST /apps/{app}/dynos`` with ``{"command": "bash", "attach": true, "size": "2X",
"env": {"K": "v"}, "force_no_tty": false}`` answers 201 with the dyno. A detached dyno runs at
once and logs its output. An attached one starts when a client connects, by either of two
doors, with the same one-use secret (the first client to show it has the dyno):

- ``attach_url``: ``rendezvous://HOST:PORT/<app id>/<dyno>/<secret>``, Heroku's rendezvous
  protocol over TLS that the heroku CLI speaks (core/rendezvous.py, api/rendezvous.py). HOST
  is the host the client reached this API at (the listener binds beside the API);
- ``attach_websocket_url``: ``ws://.../attach?token=<secret>``, the WebSocket ``dynos run``
  uses, which keeps stdout and stderr apart and follows the terminal's size:

  - client -> server: binary frames are stdin; text frames are JSON, ``{"resize": [cols,
    rows]}`` (the terminal changed size) or ``{"eof": true}`` (stdin ended);
  - server -> client: binary frames are output, their first byte the stream (1 stdout, 2
    stderr; with a TTY everything is 1); then one text frame ``{"exit": status}`` and the
    close. A dyno that cannot be attached sends ``{"error": {"id", "message"}}`` and closes.

A client that goes away ends its dyno (SIGHUP, then SIGTERM), as Heroku's do.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from dynos.api import shapes
from dynos.api.params import json_object, optional_str
from dynos.core.config_vars import check_config_var
from dynos.core.rendezvous import attach_url
from dynos.errors import DynosError, UserError
from dynos.platform.models import Terminal
from dynos.platform.platform import Platform

log = logging.getLogger(__name__)


def one_off_routes(
    platform: Platform, api_url: str, rendezvous_port: int | None = None
) -> list[BaseRoute]:
    """``POST /apps/{app}/dynos`` and the attach WebSocket; ``api_url`` as clients reach it,
    ``rendezvous_port`` the rendezvous listener's (None: no ``attach_url``)."""
    dynos = platform.dynos
    ws_base = "ws" + api_url.removeprefix("http")  # http -> ws, https -> wss

    async def create(request: Request) -> Response:
        app = await platform.get_app(request.path_params["app"])
        body = await json_object(request)
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise UserError('Send the "command" to run, e.g. {"command": "bash"}.')
        if body.get("type") not in (None, "run"):
            raise UserError('Only one-off dynos can be created: leave "type" out, or send "run".')
        record = await dynos.run(
            app,
            command,
            size=optional_str(body, "size"),
            env=_env(body.get("env")),
            attach=body.get("attach") is True,
            tty=body.get("force_no_tty") is not True,
        )
        answer = shapes.dyno(record)
        if record.attachment is not None:
            token = record.attachment.token
            path = f"/apps/{quote(app.name)}/dynos/{record.name}/attach"
            answer["attach_websocket_url"] = f"{ws_base}{path}?token={token}"
            if rendezvous_port is not None:
                # The host this client reached the API at reaches the listener too.
                host = request.url.hostname or "127.0.0.1"
                answer["attach_url"] = attach_url(host, rendezvous_port, app.id, record.name, token)
        return JSONResponse(answer, status_code=201)

    async def attach(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            app = await platform.get_app(websocket.path_params["app"])
            token = websocket.query_params.get("token", "")
            attached = await dynos.attach(app, websocket.path_params["dyno"], token)
        except DynosError as exc:
            await websocket.send_json({"error": exc.to_json()})
            await websocket.close(code=1008)
            return
        await _bridge(websocket, attached.terminal, attached.hang_up)

    return [
        Route("/apps/{app}/dynos", create, methods=["POST"]),
        WebSocketRoute("/apps/{app}/dynos/{dyno}/attach", attach),
    ]


def _env(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) for k, v in value.items()
    ):
        raise UserError('"env" must be an object of names to strings, e.g. {"DEBUG": "1"}.')
    env = {k: str(v) for k, v in value.items()}
    for key, text in env.items():  # the config vars' rules, checked before anything starts
        check_config_var(key, text, "Environment variable")
    return env


async def _bridge(websocket: WebSocket, terminal: Terminal, hang_up: Callable[[], None]) -> None:
    """Carry bytes both ways until the dyno exits (then send its status) or the client goes
    away (then ``hang_up()``)."""
    incoming = asyncio.create_task(_client_to_dyno(websocket, terminal, hang_up))
    try:
        async for channel, data in terminal.output():
            await websocket.send_bytes(bytes([channel]) + data)
        status = await terminal.exit_status()
        await websocket.send_json({"exit": status})
        await websocket.close()
    except (WebSocketDisconnect, RuntimeError):  # the client left while output was going out
        hang_up()
    finally:
        incoming.cancel()


async def _client_to_dyno(
    websocket: WebSocket, terminal: Terminal, hang_up: Callable[[], None]
) -> None:
    """The client's frames into the dyno until the client leaves (then ``hang_up()``). This
    task is the only one that hears a silent dyno's client leave: should it fail, it hangs up
    all the same, or the dyno would run on with nobody attached."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                await terminal.write(message["bytes"])
            elif message.get("text") is not None:
                _control(terminal, message["text"])
    except (WebSocketDisconnect, RuntimeError):  # the socket closed under it: the client left
        pass
    except Exception:  # a bug: logged, and still no dyno left running unattached
        log.exception("the attach socket's input failed: hanging up its dyno")
    hang_up()


def _control(terminal: Terminal, text: str) -> None:
    """A client's text frame: a new window size, or the end of its input. Others are ignored."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return
    if not isinstance(message, dict):
        return
    size = message.get("resize")
    if isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) for n in size):
        terminal.resize(size[0], size[1])  # kept within 1..9999 each way by the terminal
    if message.get("eof") is True:
        terminal.close_input()
