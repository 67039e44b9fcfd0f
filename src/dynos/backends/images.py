"""Release images: the stack image with a slug at /app, made once per slug, and an image per
release on top of it.

A container of the stack image gets the slug as a tar stream (owned by the dyno user, so
that a dyno may write to its app directory as on Heroku: the writes stay in its container's
layer, gone at its next start) and is committed as ``dynos/<app>:slug-<id>``, labelled with
the app's id so that ``apps:destroy`` removes them.

Each release then becomes ``dynos/<app>:v<N>``: the slug's image with no file added (a
0-byte LABEL step) and labels saying which release and which slug
(``core.containers.release_labels``). A config change or a rollback makes a new release and
so a new image, made in about a second (no slug is copied), and ``docker images`` lists an
app's history as Heroku's releases do. A release's config vars are not written into its
image: they are secrets, which an image's metadata would show to whoever lists images and
carry to any registry it is pushed to; its dynos get them at each start, as before.
Blocking: run in a thread.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import IO

import docker.errors
from docker import DockerClient

from dynos.core.containers import (
    APP_DIR,
    DYNO_UID,
    LABEL,
    release_image,
    release_labels,
    versioned_image,
)
from dynos.errors import PlatformError


class ReleaseImages:
    def __init__(self, client: DockerClient, stack_image: str) -> None:
        self._client = client
        self.stack_image = stack_image
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def ensure(self, app_id: str, app_name: str, slug: Path, release: int | None = None) -> str:
        """The image of ``release`` (of ``slug``'s image without one), made now unless the
        engine has it already."""
        name = release_image(app_name, slug.name)
        with self._lock(name):  # the dynos of one release start together: one makes it
            if not self._has(name, {f"{LABEL}.app-id": app_id}):
                self._make(name, app_id, slug)
        if release is None:
            return name
        versioned = versioned_image(app_name, release)
        labels = release_labels(app_id, release, slug.name)
        with self._lock(versioned):
            if not self._has(versioned, labels):
                self._label(versioned, name, labels)
        return versioned

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _has(self, name: str, labels: dict[str, str]) -> bool:
        """Whether the engine has ``name`` made for this app, slug and release: a tag is
        only a name, and an app renamed away, a failed removal or another server on this
        engine may have left one of the same name with another app's code, which a new
        app of that name must never run (with its own config vars)."""
        try:
            image = self._client.images.get(name)
        except docker.errors.ImageNotFound:
            return False
        found = image.labels or {}
        return all(found.get(key) == value for key, value in labels.items())

    def _label(self, name: str, base: str, labels: dict[str, str]) -> None:
        """``name``: ``base`` with ``labels`` and no file added (a build of one FROM line)."""
        try:
            self._client.images.build(
                fileobj=io.BytesIO(f"FROM {base}\n".encode()),
                tag=name,
                labels=labels,
                pull=False,
                rm=True,
                forcerm=True,
            )
        except docker.errors.DockerException as exc:
            raise PlatformError(f"Could not make the image {name}: {exc}") from None

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
        images = self._client.images.list(filters={"label": f"{LABEL}.app-id={app_id}"})
        # Release images first: a slug's image with a release image on it cannot go.
        for image in sorted(images, key=lambda i: f"{LABEL}.release" not in i.labels):
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
