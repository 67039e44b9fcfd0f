"""The interpreters a container build may use: the stack image's own and the server's.

A container build chooses as the local build does (``core.python_build``: the version from
``.python-version``, ``runtime.txt`` or a Pipfile.lock, the newest interpreter that serves
it, the same one-line failure), among the stack image's ``python3.X`` and the interpreters
the server has (:class:`~dynos.platform.pythons.HostPythons`: PATH, pyenv, uv-managed) whose
install tree is their own (``pythons.own_install_tree``: not Debian's ``/usr``). On a tie the
stack image's wins: it is in every release's image already. None is downloaded.

A server's interpreter reaches the build as the local build's copy of it
(``HostPythons.relocatable``: root's, without tests, loading its own ``libpython`` by
``$ORIGIN/../lib``), bind-mounted read-only at ``HOST_PYTHON``: the build's container sees
that one tree of the host besides what it saw already, and nothing in it can change it. The
build copies it into the slug at ``SLUG_PYTHON`` (``core.containers.copy_python``), where the
virtualenv links to it and the release's image carries it, so dynos run it from the slug.

A server's interpreter runs in the image only where the server and the stack image are the
same system (Debian 12, bookworm, on the same machine architecture): built on the host, it
needs in the image the C library and shared libraries (libssl, libsqlite3, libffi...) it was
linked with. So each tree is run once in the stack image before a build may use it
(``core.container_pythons``), and the verdict kept per tree and stack image (not a kill's
or a timeout's: asked again). One that fails, or whose copy cannot be made, is not offered:
the choice falls to the next that serves the request (the stack's own for an app that asks
for no version), or the build fails naming that version (or with the copy's own error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import requests.exceptions
from docker import DockerClient

from dynos.core.container_pythons import (
    check_command,
    check_failure,
    check_is_lasting,
    choose_container_python,
    no_container_python,
)
from dynos.core.containers import (
    DYNO_UID,
    HOST_PYTHON,
    LABEL,
    SLUG_PYTHON,
    STACK_PYTHONS_SCRIPT,
    stack_pythons,
)
from dynos.core.python_build import Interpreter, PythonRequest, format_version
from dynos.errors import BuildFailed, PlatformError
from dynos.platform.pythons import HostPythons, own_install_tree

log = logging.getLogger(__name__)

STACK = "stack"  # an Interpreter's source when it is the stack image's own
NO_DOWNLOAD = "a container build downloads none"
CHECK_TIMEOUT = 60  # seconds a check may take: an import of a few modules, on a busy host


@dataclass(frozen=True)
class ContainerPython:
    """The interpreter a build uses, by its path in the container; ``tree``: the host's copy
    to mount read-only and copy into the slug (None for the stack image's own)."""

    interpreter: Interpreter
    tree: Path | None
    line: str  # "-----> Python 3.13.0 from pyenv, copied into the slug: ..."


class ContainerPythons:
    """``server``: the server's id (``core.containers.server_id``), which labels the check's
    containers as its dynos are labelled, so the next server removes one it left."""

    def __init__(
        self, client: DockerClient, stack_image: str, host: HostPythons, *, server: str
    ) -> None:
        self._client = client
        self._stack_image = stack_image
        self.host = host
        self._server = server
        self._stack: list[Interpreter] | None = None
        # Each tree's check in the stack image: None (it runs) or why not, by the tree, its
        # binary's identity (device, inode, change time: a tree made anew is checked anew)
        # and the stack image's id. Only a lasting verdict is kept (check_is_lasting).
        self.verdicts: dict[tuple[str, tuple[int, int, int], str], str | None] = {}
        self._checking = asyncio.Lock()

    async def choose(self, request: PythonRequest) -> ContainerPython:
        """The interpreter that serves ``request``; BuildFailed in one line otherwise."""
        stack = await self._stack_pythons()
        host = await asyncio.to_thread(self._host_pythons)
        found = [*stack, *host]  # stack first: max() keeps the first of equal versions
        refused: dict[Interpreter, str] = {}
        uncopied: dict[Interpreter, PlatformError] = {}
        while True:
            chosen = choose_container_python(request, found, refused)
            if chosen is None:
                serving = [i for i in refused if i.matches(request.version)]
                best = sorted(serving, key=lambda i: i.version)[-1] if serving else None
                if best in uncopied:  # its own error says what to do, not "another system"
                    raise uncopied[best]
                # The line names those that did not run there; an uncopied one is not one.
                checked = {i: why for i, why in refused.items() if i not in uncopied}
                offered = [i for i in found if i not in uncopied]
                raise BuildFailed(
                    no_container_python(request, offered, checked, self._stack_image, NO_DOWNLOAD)
                )
            version = format_version(chosen.version)
            if chosen.source == STACK:
                line = f"-----> Python {version} from {self._stack_image}: {chosen.path}"
                return ContainerPython(chosen, None, line)
            try:
                tree = await asyncio.to_thread(self.host.relocatable, chosen)
            except PlatformError as exc:  # refused as a failed check is: the next may serve
                log.warning("%s is not offered to container builds: %s", chosen.path, exc)
                refused[chosen], uncopied[chosen] = "its copy could not be made", exc
                continue
            name = Path(chosen.path).resolve().name
            failure = await self.runs_in_stack(tree, name)
            if failure is not None:
                refused[chosen] = failure
                continue
            binary = Path(SLUG_PYTHON, "bin", name)
            in_slug = Interpreter(chosen.version, str(binary), chosen.source)
            line = f"-----> Python {version} from {chosen.source}, copied into the slug: {binary}"
            return ContainerPython(in_slug, tree, line)

    async def runs_in_stack(self, tree: Path, binary: str) -> str | None:
        """None when ``tree``'s ``bin/<binary>`` runs in the stack image (its libraries
        load), else what it said; asked once per tree and stack image."""
        async with self._checking:  # builds at once: one check of a tree
            image, identity = await asyncio.to_thread(self._identities, tree / "bin" / binary)
            key = (str(tree), identity, image)
            if key in self.verdicts:
                return self.verdicts[key]
            verdict, lasting = await asyncio.to_thread(self._check, tree, binary, image)
            if lasting:
                self.verdicts[key] = verdict
            if verdict is not None:
                log.warning(
                    "%s does not run in %s (%s): container builds do not use it%s",
                    tree,
                    self._stack_image,
                    verdict,
                    "" if lasting else " this time (it is checked again at the next build)",
                )
            return verdict

    def _image_id(self) -> str:
        """The stack image's id, which its containers are made from: a tag pruned meanwhile
        would have the SDK pull it from Docker Hub."""
        try:
            return str(self._client.images.get(self._stack_image).id)
        except docker.errors.DockerException as exc:
            raise PlatformError(f"Could not read the image {self._stack_image}: {exc}") from None

    def _identities(self, binary: Path) -> tuple[str, tuple[int, int, int]]:
        image = self._image_id()
        try:
            info = os.stat(binary)
            return image, (info.st_dev, info.st_ino, info.st_ctime_ns)
        except OSError as exc:
            raise PlatformError(
                f"Could not read {binary} ({exc.strerror}): remove its tree, which the next "
                "build makes anew."
            ) from None

    def _check(self, tree: Path, binary: str, image: str) -> tuple[str | None, bool]:
        """The tree run in the stack image as a build mounts it and a dyno runs it (read-only,
        as the dyno's user, no network): None or what it said, and whether that verdict
        lasts (not a kill, a timeout: those are asked again). The image by its id: a tag
        pruned meanwhile would have the SDK pull it from Docker Hub."""
        container = None
        try:
            container = self._client.containers.create(
                image,
                check_command(binary),
                network_disabled=True,
                user=f"{DYNO_UID}:{DYNO_UID}",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                volumes={str(tree): {"bind": HOST_PYTHON, "mode": "ro"}},
                labels={f"{LABEL}.build": "python-check", f"{LABEL}.server": self._server},
            )
            container.start()
            status = int(container.wait(timeout=CHECK_TIMEOUT).get("StatusCode", -1))
            if status == 0:
                return None, True
            said = container.logs(stdout=False, stderr=True)
            return check_failure(status, bytes(said).decode("utf-8", "replace")), (
                check_is_lasting(status)
            )
        except requests.exceptions.RequestException:  # the wait's timeout, or a lost socket
            return f"no answer within {CHECK_TIMEOUT} seconds", False
        except docker.errors.DockerException as exc:
            raise PlatformError(
                f"Could not run {tree} in {self._stack_image} to check it: {exc}"
            ) from None
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)

    def _host_pythons(self) -> list[Interpreter]:
        """The server's interpreters that have an install tree of their own to copy."""
        return [i for i in self.host.find() if own_install_tree(i) is not None]

    async def _stack_pythons(self) -> list[Interpreter]:
        """The stack image's python3.X interpreters, asked once per server."""
        if self._stack is None:
            image = await asyncio.to_thread(self._image_id)
            try:
                output = await asyncio.to_thread(
                    self._client.containers.run,
                    image,
                    ["/bin/sh", "-c", STACK_PYTHONS_SCRIPT],
                    remove=True,
                    network_disabled=True,
                    labels={f"{LABEL}.build": "pythons"},
                )
            except docker.errors.DockerException as exc:
                raise PlatformError(
                    f"Could not ask {self._stack_image} its Pythons: {exc}"
                ) from None
            found = stack_pythons(bytes(output).decode("utf-8", "replace"))
            self._stack = [Interpreter(version, path, STACK) for version, path in found]
        return self._stack
