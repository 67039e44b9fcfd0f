"""API authentication: one token, sent as Heroku clients send it.

``Authorization: Bearer <token>`` (the heroku CLI with ``HEROKU_API_KEY``, the dynos CLI) or
HTTP Basic with the token as the password (``curl -n`` with a ``.netrc`` entry, older Heroku
libraries), exactly as the Heroku Platform API accepts both.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from dynos.errors import Unauthorized


def credential(header: bytes) -> bytes | None:
    """The token an ``Authorization`` header carries (Bearer, or Basic's password)."""
    scheme, _, value = header.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        return value.strip()
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


class BearerAuth:
    """Every request needs the token; paths under ``open_prefixes`` carry their own
    credential in the URL (log session streams)."""

    def __init__(self, app: ASGIApp, token: str, open_prefixes: tuple[str, ...]) -> None:
        self._app = app
        self._token = token.encode()
        self._open = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self._open):
            await self._app(scope, receive, send)
            return
        given = credential(dict(scope["headers"]).get(b"authorization", b""))
        if given is not None and hmac.compare_digest(given, self._token):
            await self._app(scope, receive, send)
            return
        error = Unauthorized(
            "Invalid credentials provided: send 'Authorization: Bearer <token>' "
            "(the token is printed by 'dynos auth:token')."
        )
        response = JSONResponse(error.to_json(), status_code=401)
        await response(scope, receive, send)
