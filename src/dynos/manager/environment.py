"""What a dyno's process is started with: its environment, and its readiness probe's path."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from dynos.core.python_build import web_concurrency
from dynos.core.sizes import DynoSize


def dyno_environment(
    config: dict[str, str],
    slug: Path,
    name: str,
    port: int | None,
    python: str = sys.executable,
    size: DynoSize | None = None,
) -> dict[str, str]:
    """A dyno's whole environment: the app's config vars and the platform's basics.

    Nothing of the server's own environment leaks in (its token, its ``DYNOS_*`` settings).
    The Python that runs dynos is on PATH, after the release's own virtualenv if it has one.
    A Python app's dynos (a slug with a ``.venv``) of ``size`` get ``WEB_CONCURRENCY`` by
    its memory and the host's cores, as on Heroku, unless the config sets it.
    """
    path = [str(slug / ".venv" / "bin"), os.path.dirname(python)]
    path += ["/usr/local/bin", "/usr/bin", "/bin"]
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(slug),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",  # as Heroku's Python buildpack sets: logs line by line
        **config,
        "DYNO": name,
    }
    if port is not None:
        env["PORT"] = str(port)
    if size is not None and (slug / ".venv").is_dir():
        # What Heroku's Python buildpack sets at dyno start; a .profile may still change it.
        env["DYNO_RAM"] = str(size.memory_mb)
        if "WEB_CONCURRENCY" not in config:
            env["WEB_CONCURRENCY"] = str(web_concurrency(size.memory_mb, os.cpu_count() or 1))
    return env


def health_path(settings: Mapping[str, object], type_: str) -> str | None:
    """The path a new dyno of ``type_`` must answer before it gets traffic: the app's
    ``health_check_path`` for a web dyno, None otherwise."""
    path = settings.get("health_check_path")
    return path if type_ == "web" and isinstance(path, str) else None
