"""Turning an uploaded app directory into a slug: unpack, read the Procfile, build.

A slug is a directory under ``<home>/slugs/<id>``, built in place (a virtualenv records its
absolute path, so it cannot be moved after pip ran) and never changed once a release uses it.
A failed build removes its directory: the previous release keeps running, untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from dynos.core.procfile import parse_procfile
from dynos.errors import BadRequest, BuildFailed, UserError
from dynos.priority import as_workload


@dataclass(frozen=True)
class Slug:
    id: str
    path: Path
    processes: dict[str, str]

    @property
    def needs_build(self) -> bool:
        return (self.path / "requirements.txt").is_file()


def unpack_slug(tarball: Path, slugs_dir: Path) -> Slug:
    """Unpack ``tarball`` into a new slug directory and read its Procfile.

    Raises BadRequest for something that is not a .tar.gz and UserError for a missing or
    malformed Procfile; in both cases nothing is left behind.
    """
    slug_id = str(uuid.uuid4())
    path = slugs_dir / slug_id
    path.mkdir(parents=True)
    try:
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                # The "data" filter refuses absolute paths, links out of the tree and devices.
                archive.extractall(path, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BadRequest(
                f"The upload is not a readable .tar.gz of an app directory ({exc})."
            ) from exc
        procfile = path / "Procfile"
        if not procfile.is_file():
            raise UserError(
                "No Procfile at the top of the app directory: add one with a line like "
                "'web: python3 web.py'."
            )
        processes = parse_procfile(procfile.read_text(encoding="utf-8", errors="replace"))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return Slug(slug_id, path, processes)


async def build_slug(slug: Slug, python: str = sys.executable) -> AsyncIterator[str]:
    """Install the slug's requirements.txt into ``.venv``, yielding output lines.

    Raises BuildFailed when pip fails; the caller removes the slug.
    """
    venv = slug.path / ".venv"
    yield "-----> Python app detected"
    yield f"-----> Creating virtualenv with {python}"
    async for line in _run(python, "-m", "venv", str(venv), cwd=slug.path):
        yield line
    yield "-----> Installing requirements with pip"
    pip = (str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check")
    async for line in _run(*pip, "--progress-bar", "off", "-r", "requirements.txt", cwd=slug.path):
        yield "       " + line


async def _run(*argv: str, cwd: Path) -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=as_workload,  # a build must not take the router's priority
    )
    assert process.stdout is not None
    try:
        async for raw in process.stdout:
            yield raw.decode("utf-8", "replace").rstrip()
        status = await process.wait()
    finally:
        if process.returncode is None:  # the client went away mid-build
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if status != 0:
        raise BuildFailed(
            f"Build failed: {Path(argv[0]).name} {' '.join(argv[1:3])} exited with status "
            f"{status}. Fix the error above and deploy again; the previous release keeps running."
        )
