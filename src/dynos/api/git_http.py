"""The git service: git's smart HTTP protocol for ``https://git.<domain>/APP.git``.

The router sends it every request for the Host ``git.<domain>`` (a platform route in its
table, server.py): it listens on a loopback port of its own, beside the API. A request must
come over the router's HTTPS port (``X-Forwarded-Proto: https``, which only the router
sets), and is authenticated as Heroku's git server does it: HTTP Basic with any user name
and the API token as the password (a ``.netrc`` entry, or a credential helper: ``dynos
git:credentials``, ``heroku git:credentials``); a missing or wrong one is answered ``401``
with a ``WWW-Authenticate`` challenge, which makes git ask its credential helpers.

The protocol itself is ``git http-backend``'s (platform/git_repos.py): this is a CGI
gateway, a raw ASGI app so that the request body streams into the backend while its answer
streams out (a push's build output reaches the pusher as it comes). What reaches the
backend is only an app's repository and the smart protocol's three endpoints
(core/git_push.py: ``parse_git_path``); every refusal is a short text git shows its user.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging

from starlette.types import Receive, Scope, Send

from dynos.api.auth import credential
from dynos.core.git_push import parse_cgi_head, parse_git_path, split_cgi_head
from dynos.errors import DynosError, Forbidden, NotFound, Unauthorized
from dynos.platform.git_repos import GitBackend
from dynos.platform.platform import Platform

log = logging.getLogger(__name__)

REALM = 'Basic realm="dynos git"'
# The router's timeout for the service's answer to start: it answers a request's head at
# once (git http-backend writes it first), whatever the build takes after.
REQUEST_TIMEOUT = 120.0
CHUNK = 64 * 1024
# Hop-by-hop or framing headers a CGI program does not decide: the server frames the answer.
_DROPPED = frozenset({"content-length", "transfer-encoding", "connection"})


class GitHttp:
    """The ASGI app of the git service."""

    def __init__(self, platform: Platform, token: str, git_url: str) -> None:
        """``git_url``: an app's repository URL, ``{app}`` standing for its name."""
        self._platform = platform
        self._token = token.encode()
        self._git_url = git_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        try:
            # The router says how the request came; only it can (forwarding.py). Over plain
            # HTTP, git would send the token in the clear at the 401: refused before that.
            if headers.get(b"x-forwarded-proto") != b"https":
                raise Forbidden(
                    "git over plain HTTP would send the API token in the clear: push to "
                    f"{self._git_url.format(app='APP')} ('dynos git:remote -a APP' sets it)."
                )
            given = credential(headers.get(b"authorization", b""))
            if given is None or not hmac.compare_digest(given, self._token):
                raise Unauthorized(
                    "Invalid credentials: give any user name and the API token as the "
                    "password ('dynos git:remote -a APP' sets git up to do it)."
                )
            request = parse_git_path(
                scope["path"], scope["query_string"].decode("latin-1"), scope["method"]
            )
            repos = self._platform.git
            if repos is None:
                raise NotFound("This server keeps no git repositories.")
            app = await self._platform.get_app(request.app)
            backend = await repos.start_backend(app, request, cgi_vars(scope))
        except DynosError as exc:
            await _refuse(send, exc)
            return
        try:
            await _relay(backend, receive, send)
        finally:
            await backend.close()


def cgi_vars(scope: Scope) -> dict[str, str]:
    """The CGI variables ``git http-backend`` reads from a request (RFC 3875, and git's own
    ``GIT_PROTOCOL`` for protocol v2)."""
    headers = {name.decode("latin-1").lower(): value for name, value in scope["headers"]}
    cgi = {
        "REQUEST_METHOD": scope["method"],
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
    }
    for header, variable in (
        ("content-type", "CONTENT_TYPE"),
        ("content-length", "CONTENT_LENGTH"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ):
        value = headers.get(header)
        if value is not None and value.isascii() and len(value) < 1024:
            cgi[variable] = value.decode("ascii")
    return cgi


async def _refuse(send: Send, error: DynosError) -> None:
    body = (error.message + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if isinstance(error, Unauthorized):
        headers.append((b"www-authenticate", REALM.encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _relay(backend: GitBackend, receive: Receive, send: Send) -> None:
    """The request body into the backend, its answer back, both as they come."""
    process = backend.process
    assert process.stdout is not None and process.stderr is not None
    feeding = asyncio.create_task(_feed(process, receive))
    complaints = asyncio.create_task(_tail(process.stderr))
    try:
        buffer = b""
        cut = None
        while cut is None:
            data = await process.stdout.read(CHUNK)
            if not data:
                break
            buffer += data
            cut = split_cgi_head(buffer)
        try:
            if cut is None:
                raise ValueError("it ended before its answer")
            status, headers = parse_cgi_head(cut[0])
        except ValueError as exc:
            await process.wait()
            said = (await complaints).decode(errors="replace").strip()
            log.warning("git http-backend: %s (%s)", exc, said)
            await _refuse(send, DynosError(f"The git server failed: {said or exc}"))
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in headers
                    if name.lower() not in _DROPPED
                ],
            }
        )
        body = cut[1]
        while True:
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            body = await process.stdout.read(CHUNK)
            if not body:
                break
        await send({"type": "http.response.body", "body": b""})
    finally:
        feeding.cancel()
        complaints.cancel()
        for task in (feeding, complaints):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _tail(stream: asyncio.StreamReader) -> bytes:
    """All of ``stream`` read (so that the backend never blocks on it), its end kept."""
    kept = b""
    while data := await stream.read(CHUNK):
        kept = (kept + data)[-4096:]
    return kept


async def _feed(process: asyncio.subprocess.Process, receive: Receive) -> None:
    stdin = process.stdin
    assert stdin is not None
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: the backend sees the end of its input
            chunk = message.get("body", b"")
            if chunk:
                stdin.write(chunk)
                await stdin.drain()
            if not message.get("more_body", False):
                return
    except (BrokenPipeError, ConnectionResetError):
        return  # the backend stopped reading: its answer says why
    finally:
        stdin.close()
