"""The router's error codes (Heroku's H codes) and the pages it serves for them.

Each code keeps Heroku's meaning and log description (devcenter "Heroku Error Codes"). A code
the router does not raise yet is added here when it does (H11 backlog, H15 idle connection ...).
"""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RouterError:
    code: str
    status: int
    desc: str  # the log line's desc="..."


H10 = RouterError("H10", 503, "App crashed")  # every web dyno crashed
H12 = RouterError("H12", 503, "Request timeout")  # no response head within the app's timeout
H13 = RouterError("H13", 503, "Connection closed without response")
H14 = RouterError("H14", 503, "No web processes running")  # formation has no web dyno
H17 = RouterError("H17", 503, "Poorly formatted HTTP response")
H18 = RouterError("H18", 503, "Server Request Interrupted")  # dyno closed mid-response
H19 = RouterError("H19", 503, "Backend connection timeout")
H20 = RouterError("H20", 503, "App boot timeout")  # an idle app did not wake in time
H21 = RouterError("H21", 503, "Backend connection refused")
H27 = RouterError("H27", 499, "Client Request Interrupted")  # the client left first
H99 = RouterError("H99", 503, "Platform error")  # a bug in the router: never the app's fault

ROUTER_ERRORS: dict[str, RouterError] = {
    error.code: error for error in (H10, H12, H13, H14, H17, H18, H19, H20, H21, H27, H99)
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;color:#333;max-width:36em;margin:4em auto;"
    "padding:0 1em}code{background:#f4f4f4;padding:0 .2em}small{color:#888}"
)


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{title}</h1>\n{body}\n</body></html>\n"
    ).encode()


def application_error_page(app: str, request_id: str) -> bytes:
    """The page for every H code: the details are in the app's log, not shown to visitors."""
    return _page(
        "Application error",
        "<p>This app could not serve your request right now.</p>\n"
        "<p>If you own the app, its logs say what went wrong: "
        f"<code>dynos logs --tail -a {html.escape(app)}</code></p>\n"
        f"<p><small>Request ID: {html.escape(request_id)}</small></p>",
    )


def no_such_app_page(host: str) -> bytes:
    return _page(
        "No such app",
        f"<p>There is no app at <code>{html.escape(host or '(no Host header)')}</code>.</p>",
    )


_CLIENT_ERRORS = {
    400: ("Bad request", "The request could not be read as HTTP/1.1."),
    414: ("URI too long", "The request line is longer than 8 KB."),
    431: (
        "Request header fields too large",
        "A header line is longer than 8 KB, or the request has too many headers.",
    ),
}


def bad_request_page(status: int = 400) -> bytes:
    """The page for a request the router refuses to read (400, 414 or 431)."""
    title, text = _CLIENT_ERRORS.get(status, _CLIENT_ERRORS[400])
    return _page(title, f"<p>{text}</p>")


def too_many_connections_page() -> bytes:
    """The page for a connection past the router's caps (router/limits.py)."""
    return _page(
        "Too many connections",
        "<p>The router holds as many connections as it allows, from your address or from "
        "everyone. Close some, or try again in a moment.</p>",
    )
