"""The router's log line for each request, in Heroku's format.

``at=info method=GET path="/" host=foo.localhost request_id=… fwd="127.0.0.1" dyno=web.1
connect=0ms service=12ms status=200 bytes=1234 protocol=http``; an error line starts with
``at=error code=H14 desc="No web processes running"`` and leaves the fields it cannot know
empty (``dyno= connect= service= bytes=``), as Heroku's does.

Lines are batched (``RequestLog``) so that writing them stays off the path of the requests.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from dynos.logs.hub import LogHub
from dynos.logs.logline import PLATFORM
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


# method, path, host, request_id, fwd, dyno, connect_ms, service_ms, status, bytes_sent, error
LineFields = tuple[
    bytes, bytes, str, str, str, str, int | None, int | None, int, int | None, RouterError | None
]


class RequestLog:
    """Router lines, collected during a loop iteration and written to the log hub after it.

    ``add`` only appends a tuple: formatting the line and handing it to the hub (a timestamp,
    a ring, the subscribers) happen in ``flush``, once per loop iteration however many
    requests ended in it, after the responses of that iteration were written.
    """

    def __init__(self, logs: LogHub) -> None:
        self._logs = logs
        self._pending: list[tuple[str, LineFields]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, app: str, fields: LineFields) -> None:
        if not self._pending:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)
        self._pending.append((app, fields))

    def flush(self) -> None:
        """Write every collected line now (with one timestamp: they ended together)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        lines: list[tuple[str, str]] = []
        for app, fields in pending:
            method, path, host, request_id, fwd, dyno, connect, service, status, size, error = (
                fields
            )
            text = path.decode("latin-1")
            if '"' in text or "\\" in text:
                text = _quoted(text)
            if '"' in fwd or "\\" in fwd:
                fwd = _quoted(fwd)
            if " " in host or '"' in host:
                host = _bare(host)
            head = "at=info" if error is None else f'at=error code={error.code} desc="{error.desc}"'
            line = (
                f'{head} method={method.decode("latin-1")} path="{text}" host={host} '
                f'request_id={request_id} fwd="{fwd}" dyno={dyno} '
                f"connect={'' if connect is None else f'{connect}ms'} "
                f"service={'' if service is None else f'{service}ms'} status={status} "
                f"bytes={'' if size is None else size} protocol=http"
            )
            lines.append((app, line))
        self._logs.emit_batch(PLATFORM, "router", datetime.now(UTC), lines)
