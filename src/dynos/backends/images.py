"""Release images: the stack image with a slug at /app, made once per slug.

A container of the stack image gets the slug as a tar stream (owned by the dyno user, so
that a dyno may write to its app directory as on Heroku: the writes stay in its container's
layer, gone at its next start) and is committed as ``dynos/<app>:slug-<id>``, labelled with
the app's id so that ``apps:destroy`` removes them. Blocking: run in a thread.
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import IO

import docker.errors
from docker import DockerClient

from dynos.core.containers import APP_DIR, DYNO_UID, LABEL, release_image
from dynos.errors import PlatformError


class ReleaseImages:
    def __init__(self, client: DockerClient, stack_image: str) -> None:
        self._client = client
        self.stack_image = stack_image
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def ensure(self, app_id: str, app_name: str, slug: Path) -> str:
        """The image of ``slug``: made now unless the engine has it already."""
        name = release_image(app_name, slug.name)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # the dynos of one release start together: one of them makes it
            try:
                self._client.images.get(name)
                return name
            except docker.errors.ImageNotFound:
                pass
            self._make(name, app_id, slug)
        return name

    def _make(self, name: str, app_id: str, slug: Path) -> None:
        repository, _, tag = name.rpartition(":")
        container = None
        try:
            container = self._client.containers.create(
                self.stack_image, command=["true"], labels={f"{LABEL}.building": app_id}
            )
            with tempfile.TemporaryFile() as archive:
                _pack(slug, archive)
                archive.seek(0)
                if not container.put_archive("/", archive):
                    raise PlatformError(f"The engine refused the slug of {name}.")
            container.commit(
                repository=repository,
                tag=tag,
                changes=[
                    f"WORKDIR {APP_DIR}",
                    f"LABEL {LABEL}.app-id={app_id}",
                    f"USER {DYNO_UID}:{DYNO_UID}",
                ],
            )
        except docker.errors.DockerException as exc:
            raise PlatformError(f"Could not make the image {name}: {exc}") from None
        finally:
            if container is not None:
                container.remove(force=True)

    def remove_app(self, app_id: str) -> None:
        """Every release image of the app (its dynos are all gone)."""
        for image in self._client.images.list(filters={"label": f"{LABEL}.app-id={app_id}"}):
            # One still used by a container being removed stays: no harm.
            with contextlib.suppress(docker.errors.APIError):
                self._client.images.remove(str(image.id), force=True)


def _pack(slug: Path, out: IO[bytes]) -> None:
    """The slug as a tar of ``app/``: the dyno user's, symlinks kept as links."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = DYNO_UID
        info.uname = info.gname = "dyno"
        return info

    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(slug, arcname=APP_DIR.lstrip("/"), filter=owned)
