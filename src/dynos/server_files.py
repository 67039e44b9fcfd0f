"""What the server keeps in its home and its process for clients and for itself: the API
token (``credentials``), ``server.json`` (where it listens, for the CLI; ``server.last.json``
once it stopped, so that a message can say where it last was), and the limit of open files.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
from pathlib import Path

from dynos.config import HomePaths

log = logging.getLogger("dynos.server")


def raise_fd_limit() -> int:
    """Raise the soft limit of open file descriptors to the hard one; return it.

    Every client connection costs the router one or two descriptors, and the soft limit is
    often 1024 where the hard one allows far more. Processes the server starts inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:  # Linux refuses an unlimited one; nr_open is the cap
        try:
            hard = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            hard = soft
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            log.info("file descriptor limit left at %d: %s", soft, exc)
    return soft


def ensure_token(paths: HomePaths) -> str:
    """The API token, created (mode 0600) on first start."""
    try:
        return paths.credentials.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        token = secrets.token_hex(32)
        fd = os.open(paths.credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(token + "\n")
        return token


def write_server_json(
    paths: HomePaths,
    api_url: str,
    domain: str,
    router_port: int,
    https_port: int,
    rendezvous_port: int,
) -> None:
    info = {
        "api_url": api_url,
        "router_url": f"http://{domain}:{router_port}",
        "router_port": router_port,
        "rendezvous_port": rendezvous_port,
        "https_port": https_port,
        "ca": str(paths.tls / "ca.pem"),
        "domain": domain,
        "pid": os.getpid(),
    }
    tmp = Path(f"{paths.server_json}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(paths.server_json)


def retire_server_json(paths: HomePaths) -> None:
    """At stop: server.json becomes server.last.json (the CLI names where the server was)."""
    paths.server_json.replace(paths.last_server_json)
