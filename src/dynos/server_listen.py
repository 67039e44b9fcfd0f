"""The server's listening sockets and its uvicorn servers (the API, the git service): bound
before anything is served, with a message that names the flag to change when a port is taken."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from dynos.config import ServerConfig
from dynos.errors import PlatformError, UserError
from dynos.router.processes import listening_sockets


def bind(host: str, port: int, flag: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"Port {port} on {host} is already in use: stop what uses it, or pass "
                f"{flag} with another port (0 picks a free one)."
            ) from exc
        raise UserError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class ApiServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the dynos server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def uvicorn_server(app: ASGIApp) -> ApiServer:
    return ApiServer(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )


def router_sockets(host: str, port: int, config: ServerConfig, flag: str) -> list[socket.socket]:
    """The listening sockets of one router port, one per router process."""
    try:
        return listening_sockets(host, port, config.router_processes)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"Port {port} is already in use: stop what uses it, or pass {flag} with "
                "another port (0 picks a free one)."
            ) from exc
        raise PlatformError(f"Cannot start the router: {exc}") from exc


def url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
