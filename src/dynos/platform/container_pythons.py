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

This rests on one assumption: the server and the stack image are the same system (Debian 12,
bookworm, on the same machine architecture), so that an interpreter built on the host finds
in the image the C library and shared libraries (libssl, libsqlite3, libffi...) it was
linked with. The stack image is debootstrapped from bookworm (``dynos stack:build``); a
server on another release should build no interpreter of its own into a container.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import docker.errors
from docker import DockerClient

from dynos.core.containers import LABEL, SLUG_PYTHON, STACK_PYTHONS_SCRIPT, stack_pythons
from dynos.core.python_build import (
    Interpreter,
    PythonRequest,
    choose_interpreter,
    format_version,
    no_interpreter,
)
from dynos.errors import BuildFailed, PlatformError
from dynos.platform.pythons import HostPythons, own_install_tree

STACK = "stack"  # an Interpreter's source when it is the stack image's own
NO_DOWNLOAD = "a container build downloads none"


@dataclass(frozen=True)
class ContainerPython:
    """The interpreter a build uses, by its path in the container; ``tree``: the host's copy
    to mount read-only and copy into the slug (None for the stack image's own)."""

    interpreter: Interpreter
    tree: Path | None
    line: str  # "-----> Python 3.13.0 from pyenv, copied into the slug: ..."


class ContainerPythons:
    def __init__(self, client: DockerClient, stack_image: str, host: HostPythons) -> None:
        self._client = client
        self._stack_image = stack_image
        self.host = host
        self._stack: list[Interpreter] | None = None

    async def choose(self, request: PythonRequest) -> ContainerPython:
        """The interpreter that serves ``request``; BuildFailed in one line otherwise."""
        stack = await self._stack_pythons()
        host = await asyncio.to_thread(self._host_pythons)
        found = [*stack, *host]  # stack first: max() keeps the first of equal versions
        chosen = choose_interpreter(request, found)
        if chosen is None:
            raise BuildFailed(no_interpreter(request, found, NO_DOWNLOAD))
        version = format_version(chosen.version)
        if chosen.source == STACK:
            line = f"-----> Python {version} from {self._stack_image}: {chosen.path}"
            return ContainerPython(chosen, None, line)
        tree = await asyncio.to_thread(self.host.relocatable, chosen)
        binary = Path(SLUG_PYTHON, "bin", Path(chosen.path).resolve().name)
        in_slug = Interpreter(chosen.version, str(binary), chosen.source)
        line = f"-----> Python {version} from {chosen.source}, copied into the slug: {binary}"
        return ContainerPython(in_slug, tree, line)

    def _host_pythons(self) -> list[Interpreter]:
        """The server's interpreters that have an install tree of their own to copy."""
        return [i for i in self.host.find() if own_install_tree(i) is not None]

    async def _stack_pythons(self) -> list[Interpreter]:
        """The stack image's python3.X interpreters, asked once per server."""
        if self._stack is None:
            try:
                output = await asyncio.to_thread(
                    self._client.containers.run,
                    self._stack_image,
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
