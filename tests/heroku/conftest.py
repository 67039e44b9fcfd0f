"""The real heroku CLI (npm ``heroku@11.10.0``), installed once into a cache directory.

The install goes to ``$DYNOS_TEST_CACHE/heroku`` (default ``~/.cache/dynos-test/heroku``) and
is reused while it holds that version; the first one takes about a minute (one worker installs,
under a file lock, while the others wait). Each command runs
with a throwaway HOME and XDG directories, so nothing is read from or written to the user's
own heroku setup, and with every call that would leave the machine switched off (update
checks, analytics, telemetry) or pointed at the dynos server (the delinquency lookup the CLI
makes beside ``GET /account``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynos.testing.harness import RunningServer, start_server

HEROKU_VERSION = "11.10.0"
NPM_TIMEOUT = 600


def cache_dir() -> Path:
    root = os.environ.get("DYNOS_TEST_CACHE") or Path.home() / ".cache" / "dynos-test"
    return Path(root) / "heroku"


def installed_version(prefix: Path) -> str | None:
    try:
        package = json.loads((prefix / "node_modules" / "heroku" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = package.get("version")
    return version if isinstance(version, str) else None


def npm_install(prefix: Path) -> None:
    """Install heroku@HEROKU_VERSION under ``prefix``: into a fresh sibling directory first,
    moved into place only when complete (a broken install never looks cached). One retry."""
    npm = shutil.which("npm")
    assert npm is not None
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = prefix.with_name(f"{prefix.name}.installing-{os.getpid()}")
    errors = []
    for _attempt in range(2):
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        result = subprocess.run(
            [
                *(npm, "install", "--prefix", str(staging), f"heroku@{HEROKU_VERSION}"),
                *("--no-audit", "--no-fund", "--loglevel=error", "--no-save"),
            ],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
        )
        if result.returncode == 0 and installed_version(staging) == HEROKU_VERSION:
            shutil.rmtree(prefix, ignore_errors=True)
            staging.rename(prefix)
            return
        errors.append(result.stderr.strip()[-2000:])
    shutil.rmtree(staging, ignore_errors=True)
    raise AssertionError(f"npm install heroku@{HEROKU_VERSION} failed twice:\n" + "\n".join(errors))


@pytest.fixture(scope="session")
def heroku_bin() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm and node are not installed: the heroku CLI end-to-end tests need them")
    prefix = cache_dir()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # The suite runs in several pytest-xdist workers, each with this session fixture: one
    # installs while the others wait, then finds it done (the install replaces the prefix,
    # which must not happen under a worker already running the CLI from it).
    with (prefix.parent / "heroku.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(prefix) != HEROKU_VERSION:
            npm_install(prefix)
    return prefix / "node_modules" / ".bin" / "heroku"


@dataclass
class Heroku:
    """Runs ``heroku ...`` against one dynos server, as a user with HEROKU_HOST set would."""

    bin: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, check: bool = True, api_key: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if api_key is not None:
            env["HEROKU_API_KEY"] = api_key
        result = subprocess.run(
            [str(self.bin), *args], env=env, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"heroku {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.bin), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )


def heroku_env(server: RunningServer, home: Path) -> dict[str, str]:
    cache = home / ".cache"
    (cache / "heroku").mkdir(parents=True, exist_ok=True)
    (cache / "heroku" / "terms-of-service").touch()  # the banner was "seen": quiet stderr
    inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    return {
        **inherited,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(cache),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "HEROKU_HOST": server.api_url,
        "HEROKU_API_KEY": server.token,
        "HEROKU_PARTICLEBOARD_URL": server.api_url,
        "HEROKU_DISABLE_AUTOUPDATE": "1",
        "HEROKU_SKIP_ANALYTICS": "1",
        "DISABLE_TELEMETRY": "true",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("heroku") / "home", "--stop-grace", "2")
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope="module")
def heroku(
    heroku_bin: Path, server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Heroku:
    return Heroku(heroku_bin, heroku_env(server, tmp_path_factory.mktemp("heroku-home")))
