"""The router's log line for each request, in Heroku's format.

``at=info method=GET path="/" host=foo.localhost request_id=… fwd="127.0.0.1" dyno=web.1
connect=0ms service=12ms status=200 bytes=1234 protocol=http``; an error line starts with
``at=error code=H14 desc="No web processes running"`` and leaves the fields it cannot know
empty (``dyno= connect= service= bytes=``), as Heroku's does.
"""

from __future__ import annotations

from dynos.router.errors import RouterError


def _quoted(value: str) -> str:
    # A quoted field must not end early: a client controls path and X-Forwarded-For.
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _bare(value: str) -> str:
    return value.replace(" ", "%20").replace('"', "%22")


def _ms(value: int | None) -> str:
    return "" if value is None else f"{value}ms"


def request_line(
    *,
    method: str,
    path: str,
    host: str,
    request_id: str,
    fwd: str,
    dyno: str,
    connect_ms: int | None,
    service_ms: int | None,
    status: int,
    bytes_sent: int | None,
    error: RouterError | None = None,
    protocol: str = "http",
) -> str:
    """One router line; ``None`` leaves a field empty, ``error`` makes it an ``at=error`` line."""
    head = "at=info" if error is None else f'at=error code={error.code} desc="{error.desc}"'
    size = "" if bytes_sent is None else str(bytes_sent)
    return (
        f'{head} method={_bare(method)} path="{_quoted(path)}" host={_bare(host)} '
        f'request_id={request_id} fwd="{_quoted(fwd)}" dyno={dyno} '
        f"connect={_ms(connect_ms)} service={_ms(service_ms)} status={status} "
        f"bytes={size} protocol={protocol}"
    )
