"""``deploy [DIR]``: send an app directory to the server, stream the build and the release
phase, print the release.

The directory goes up as one ``.tar.gz`` (without ``.git``, ``__pycache__`` and ``.venv``);
the answer is NDJSON: ``{"output": ...}`` per line of the build and of the release command,
then ``{"release": ...}`` once it is live, or ``{"error": ...}`` (docs/api.md, "dynos
extras"): a failed build or release phase exits non-zero, and the release before serves on.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import click

from dynos.cli.client import ApiClient
from dynos.cli.session import app_option, app_path, connect, require_app
from dynos.cli.style import app_label
from dynos.errors import BuildFailed, DynosError, ReleaseFailed, UserError

SKIPPED_DIRS = frozenset({".git", "__pycache__", ".venv"})


def pack_directory(root: Path) -> bytes:
    """The files under ``root`` as gzipped tar bytes, paths relative to ``root``.

    Directories named in SKIPPED_DIRS are left out wherever they are. Symlinks are stored
    as links. Raises UserError when ``root`` is not a directory.
    """
    if not root.is_dir():
        raise UserError(f"{root} is not a directory: pass the app's directory to deploy.")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            here = Path(dirpath)
            for name in [*dirnames, *sorted(filenames)]:
                path = here / name
                arcname = path.relative_to(root).as_posix()
                try:
                    archive.add(path, arcname=arcname, recursive=False)
                except OSError as exc:
                    raise UserError(f"Cannot read {path}: {exc.strerror}.") from exc
    return buffer.getvalue()


def follow_build(events: Iterable[Any], echo: Callable[[str], None]) -> Mapping[str, Any]:
    """Print each ``output`` line through ``echo`` and return the release.

    Raises ReleaseFailed for a ``release_failed`` error, BuildFailed for any other ``error``
    event, and DynosError when the stream ends without a result.
    """
    for event in events:
        if not isinstance(event, dict):
            continue
        if "output" in event:
            echo(str(event["output"]).rstrip("\n"))
        elif "release" in event and isinstance(event["release"], dict):
            release: Mapping[str, Any] = event["release"]
            return release
        elif "error" in event:
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else None
            if isinstance(error, dict) and error.get("id") == ReleaseFailed.id:
                raise ReleaseFailed(str(message or "the release command failed"))
            raise BuildFailed(str(message or "the build failed"))
    raise DynosError("the deploy ended without a release: see 'dynos logs' and try again")


def deploy_directory(
    api: ApiClient, app: str, root: Path, echo: Callable[[str], None]
) -> Mapping[str, Any]:
    """Pack ``root``, deploy it to ``app`` and return the new release.

    Raises ApiError for a rejected upload (bad Procfile, unknown app) and BuildFailed when
    the build fails; the previous release keeps running then.
    """
    payload = pack_directory(root)
    echo(f"Deploying {root} to {app_label(app)} ({format_size(len(payload))})")
    events = api.stream_ndjson(app_path(app, "deploys"), payload, "application/gzip")
    with closing(events):
        return follow_build(events, echo)


def format_size(n: int) -> str:
    """``512 B``, ``12.3 KB``, ``4.5 MB``."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


@click.command()
@app_option
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def deploy(app: str | None, directory: Path) -> None:
    """Deploy DIRECTORY (default: the current one) as a new release of the app."""
    name = require_app(app)
    root = directory.resolve()
    with connect() as api:
        release = deploy_directory(api, name, root, click.echo)
    click.echo(f"Released v{release.get('version')}")


COMMANDS: dict[str, click.Command] = {"deploy": deploy}
