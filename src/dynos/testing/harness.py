"""A real `dynos server` in a subprocess, on port-0 sockets: for integration tests and benches.

``start_server`` runs ``python -m dynos server`` on a home directory and returns a
``RunningServer`` that knows its API URL, router port and token, deploys a directory, runs the
CLI against it, and stops it with SIGTERM. As root it can run the server as another,
unprivileged user, to test what a server without root does.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dynos.backends import linux


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs, verified), made once: a Client made without
    one loads the CA bundle anew, 20-60 ms of CPU, and tests make one per API call (wait_for
    polls make twenty a second)."""
    return httpx.create_ssl_context()


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    home: Path
    api_url: str
    router_port: int
    token: str
    https_port: int = 0

    @property
    def ca(self) -> Path:
        """The server's CA certificate: what a TLS client trusts to reach its router."""
        return self.home / "tls" / "ca.pem"

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            transport=_Diagnosing(self),
        )

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's own log (stdout and stderr), and whether it still runs."""
        path = self.home.parent / f"{self.home.name}-server.log"
        said = path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"
        status = self.process.poll()
        state = "running" if status is None else f"exited {status}"
        return f"server {state}; its log ends:\n{said}"

    def router(self, app: str) -> httpx.Client:
        """A client whose requests reach ``app`` through the router."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.router_port}",
            headers={"Host": f"{app}.localhost"},
            timeout=30,
            verify=_tls(),
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DYNOS_HOME": str(self.home)}
        env.pop("DYNOS_API_URL", None)
        env.pop("DYNOS_API_KEY", None)
        result = subprocess.run(
            [sys.executable, "-m", "dynos", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"dynos {' '.join(args)} failed: {result.stderr}")
        return result

    def deploy(self, app: str, directory: Path) -> dict[str, object]:
        """Deploy ``directory``; the release it made (AssertionError if it made none)."""
        lines = self.deploy_lines(app, directory)
        assert "release" in lines[-1], lines
        return lines[-1]["release"]  # type: ignore[no-any-return]

    def deploy_lines(self, app: str, directory: Path, timeout: float = 300) -> list[dict[str, Any]]:
        """Deploy ``directory``: every line of the deploy's stream, the last a release or an
        error. Blank lines keep the stream alive during a quiet release phase: skipped."""
        with self.api() as api:
            response = api.post(
                f"/apps/{app}/deploys",
                content=tarball(directory),
                headers={"Content-Type": "application/gzip"},
                timeout=timeout,
            )
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def deploy_output(self, app: str, directory: Path) -> tuple[str, dict[str, Any]]:
        """Deploy ``directory``: its build output, and the last line (a release or an error)."""
        lines = self.deploy_lines(app, directory)
        output = "\n".join(line["output"] for line in lines if "output" in line)
        return output, lines[-1]

    def create_app(self, name: str) -> None:
        with self.api() as api:
            api.post("/apps", json={"name": name}).raise_for_status()

    def scale(self, app: str, **quantities: int) -> None:
        updates = [{"type": t, "quantity": q} for t, q in quantities.items()]
        with self.api() as api:
            api.patch(f"/apps/{app}/formation", json={"updates": updates}).raise_for_status()

    def logs(self, app: str, lines: int = 1500) -> str:
        return self.cli("logs", "-a", app, "-n", str(lines)).stdout

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


class _Diagnosing(httpx.HTTPTransport):
    """An API transport whose connection errors carry the server's log tail: a reset or a
    refusal in a loaded CI run otherwise leaves nothing to read."""

    def __init__(self, server: RunningServer) -> None:
        super().__init__(verify=_tls())
        self._server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError as exc:
            raise type(exc)(f"{exc}\n{self._server.log_tail()}", request=request) from exc


def tarball(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.rglob("*")):
            if "__pycache__" not in path.parts:
                archive.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return buffer.getvalue()


def open_temp_ancestors(home: Path) -> None:
    """Let other users pass through the temporary directories above ``home``.

    A server running as root runs dynos as other users, who must reach their code in the
    home; test tools make private temp dirs (pytest's /tmp/pytest-of-root is 0700). Only
    directories under the system temp dir are touched, and only their search bit.
    """
    temp = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() != 0:
        return
    for parent in home.resolve().parents:
        if parent == temp or temp not in parent.parents:
            continue
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def start_server(
    home: Path, *extra: str, env: dict[str, str] | None = None, user: int | None = None
) -> RunningServer:
    """``env``: added to the server's environment (``DYNOS_*`` settings among them);
    ``user``: the uid to run it as (root only), with this Python made reachable to it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DYNOS_")}
    environment.update(env or {})
    home.mkdir(parents=True, exist_ok=True)
    open_temp_ancestors(home)
    if user is not None:
        os.chown(home, user, user)
    # A killed server leaves its server.json: it must not pass for this one's.
    (home / "server.json").unlink(missing_ok=True)
    log = (home.parent / f"{home.name}-server.log").open("ab")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "dynos", "server", "--home", str(home)),
            *("--api-port", "0", "--router-port", "0", "--router-host", "127.0.0.1"),
            *("--rendezvous-port", "0"),
            *("--https-port", "0"),
            *extra,
        ],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=None if user is None else _as_user(user),
    )
    log.close()  # the server has its own copy
    info_path = home / "server.json"
    deadline = time.monotonic() + 30
    while not info_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            said = Path(log.name).read_text(errors="replace")[-3000:]
            raise AssertionError(f"dynos server did not start (exit {process.returncode}):\n{said}")
        time.sleep(0.05)
    info = json.loads(info_path.read_text())
    token = (home / "credentials").read_text().strip()
    return RunningServer(
        process, home, info["api_url"], info["router_port"], token, info.get("https_port", 0)
    )


def _as_user(uid: int) -> Callable[[], None]:
    """The child's setup that runs the server as ``uid``, in a mount namespace of its own
    where this Python and this checkout of dynos are reachable: either may live under a
    directory closed to other users (pyenv in /root, a private temp dir of a CI clone). Each
    closed directory is covered by an empty one, into which the subtree leading to the Python
    or the checkout is bound; only that namespace sees it."""
    binds: dict[Path, list[Path]] = {}  # closed directory -> what to bind back in under it
    for target in (Path(sys.executable).resolve(), Path(__file__).resolve().parents[2]):
        closed_dirs = [p for p in reversed(target.parents) if not p.stat().st_mode & 0o001]
        if len(closed_dirs) > 1:
            raise AssertionError(f"{target} is too deeply closed to other users")
        if closed_dirs:  # the directory below the closed one on the way to the target
            closed = closed_dirs[0]
            below = len(target.parents) - len(closed.parts) - 1
            inner = target if below < 0 else target.parents[below]
            if not inner.is_dir():
                raise AssertionError(f"{target} lies directly in {closed}, closed to others")
            if inner not in binds.setdefault(closed, []):
                binds[closed].append(inner)

    def setup() -> None:
        if binds:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        for closed, inners in binds.items():
            fds = [os.open(inner, os.O_PATH | os.O_DIRECTORY) for inner in inners]
            linux.mount("dynos-test", str(closed), "tmpfs", linux.MS_NOSUID, "mode=0711")
            for inner, fd in zip(inners, fds, strict=True):
                os.mkdir(inner, 0o711)
                linux.mount(f"/proc/self/fd/{fd}", str(inner), None, linux.MS_BIND | linux.MS_REC)
                os.close(fd)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return setup


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it returns true; the platform is reached over real sockets."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def dyno_states(server: RunningServer, app: str) -> dict[str, str]:
    with server.api() as api:
        return {d["name"]: d["state"] for d in api.get(f"/apps/{app}/dynos").json()}


def wait_for_dynos(
    server: RunningServer, app: str, expected: dict[str, str], timeout: float = 60.0
) -> None:
    """Wait until ``app``'s dynos are exactly ``expected``. On timeout the error carries what
    was last seen and the app's log tail: a CI failure can be read without a rerun."""
    seen: dict[str, str] = {}

    def reached() -> bool:
        nonlocal seen
        seen = dyno_states(server, app)
        return seen == expected

    try:
        wait_for(reached, timeout, f"{app}'s dynos {expected}")
    except AssertionError as error:
        log = server.logs(app, 60) if server.process.poll() is None else "(server exited)"
        raise AssertionError(f"{error}; last seen {seen}; app log tail:\n{log}") from None
