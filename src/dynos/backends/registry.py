"""The registry a swarm's nodes pull release images from.

Either one named with ``--registry HOST:PORT``, or the platform's own: Debian's
``docker-registry`` (the distribution registry), run by the server on the manager's
127.0.0.1, storing under ``<home>/registry``. The engine pushes to a loopback registry
without TLS (Docker allows plain HTTP only there); the other nodes reach the same name at
their own 127.0.0.1 (scripts/swarm-lab forwards it over its veth; a real second machine
needs the same forward, or a registry it trusts: docs/cli.md). Blocking calls: the backend
runs them in threads.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker.errors
import requests
from docker import DockerClient

from dynos.errors import PlatformError, RegistryUnreachable

log = logging.getLogger("dynos")
DEFAULT_REGISTRY = "127.0.0.1:5000"
START_TIMEOUT = 15.0  # seconds the platform's registry has to answer after its start
_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: {address}
"""


def _status(address: str, timeout: float) -> int | None:
    """The status of ``GET /v2/`` at ``address``; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def answers(address: str, timeout: float = 3.0) -> bool:
    """Whether a registry answers ``GET /v2/`` at ``address`` (200, or 401 behind auth)."""
    return _status(address, timeout) in (200, 401)


def check(address: str) -> None:
    """RegistryUnreachable unless a registry answers at ``address``."""
    if not answers(address):
        raise RegistryUnreachable(
            f"No registry answers at http://{address}/v2/: start it, or pass --registry "
            "HOST:PORT of one every swarm node can pull from (or leave --registry out and the "
            "server runs Debian's docker-registry itself)."
        )


class PlatformRegistry:
    """The server's own registry process (docker-registry), unless one answers already at
    its address (another server's on this machine, or swarm-lab's): then that one is used."""

    def __init__(self, home: Path, address: str = DEFAULT_REGISTRY) -> None:
        self.address = address
        self._home = home
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        status = _status(self.address, timeout=1.0)
        if status == 200:
            log.info("registry: the one already answering at %s", self.address)
            return
        if status is not None:  # not one the server can push to without credentials
            raise RegistryUnreachable(
                f"A registry at {self.address} answers {status} (Debian's docker-registry "
                "service, behind htpasswd?): stop it (systemctl disable --now docker-registry), "
                "or pass --registry HOST:PORT of one every swarm node can pull from."
            )
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryUnreachable(
                f"No registry answers at {self.address} and docker-registry is not installed: "
                "install it (apt-get install docker-registry), or pass --registry HOST:PORT."
            )
        self._home.mkdir(parents=True, exist_ok=True)
        config = self._home / "config.yml"
        config.write_text(_CONFIG.format(data=self._home / "data", address=self.address))
        log_file = (self._home / "registry.log").open("ab")
        self._process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log_file, stderr=log_file
        )
        log_file.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if answers(self.address, timeout=1.0):
                log.info(
                    "registry: docker-registry at %s (pid %d)", self.address, self._process.pid
                )
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RegistryUnreachable(
            f"docker-registry did not start at {self.address} (see {self._home / 'registry.log'}): "
            "free that port, or pass --registry HOST:PORT."
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._process = None


def push(client: DockerClient, address: str, image: str) -> str:
    """``image`` (on this engine) pushed as ``<address>/<image>``; the name every node pulls,
    pinned by the pushed manifest's digest (``<address>/<repository>@sha256:…``): a tag in
    the registry can be pushed over, a digest cannot. PlatformError saying why otherwise."""
    remote = f"{address}/{image}"
    repository, _, tag = remote.rpartition(":")
    digest = None
    try:
        client.images.get(image).tag(repository, tag)
        for line in client.images.push(repository, tag, stream=True, decode=True):
            if not isinstance(line, dict):
                continue
            if line.get("error"):
                raise PlatformError(f"Could not push {image} to {address}: {line['error']}")
            aux = line.get("aux")
            if isinstance(aux, dict) and isinstance(aux.get("Digest"), str):
                digest = aux["Digest"]
    except (docker.errors.DockerException, requests.RequestException) as exc:
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        raise PlatformError(f"Could not push {image} to {address}: {reason}") from None
    if digest is None or not digest.startswith("sha256:"):
        raise PlatformError(f"Could not push {image} to {address}: the engine named no digest")
    return f"{repository}@{digest}"
