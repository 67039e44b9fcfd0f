"""Which interpreter a container build may use, given which of the server's ran in the stack
image.

A server's interpreter (pyenv's, uv's, relocated into ``<home>/pythons``) was built against
the host's C library and shared libraries (libssl, libsqlite3, libffi...). In the stack
image it runs only where the host's system is the image's (Debian 12, bookworm, on the same
architecture). So before one is offered to a container build, it is run once in the stack
image, mounted as a build mounts it, importing the modules that load those libraries
(:func:`check_command`); the shell keeps the verdict per tree and stack image. One that
failed is not offered: the choice falls to the next that serves the request (the stack's
own, for an app that asks for no version), or the build fails naming the version that does
not run there and what to do (:func:`no_container_python`).

Pure: interpreters, verdicts and outputs in, choices and messages out; the shell is
``platform/container_pythons.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dynos.core.containers import HOST_PYTHON
from dynos.core.python_build import (
    MINIMUM,
    Interpreter,
    PythonRequest,
    choose_interpreter,
    format_version,
    no_interpreter,
)

# The modules whose C parts load the system's libraries: what fails first on another system.
CHECK_MODULES = "import ssl, sqlite3, ctypes, zlib, lzma, bz2, pyexpat, _hashlib"
KILLED = 137  # 128 + SIGKILL: the engine's OOM killer or a stop, not the interpreter
STACK_SYSTEM = "Debian 12 (bookworm)"  # what `dynos stack:build` debootstraps


def check_command(binary: str) -> list[str]:
    """The check's command in the stack image: the tree's ``bin/<binary>`` where a build
    mounts the tree (``HOST_PYTHON``), isolated from the environment."""
    return [f"{HOST_PYTHON}/bin/{binary}", "-I", "-c", CHECK_MODULES]


def check_failure(exit_status: int, stderr: str) -> str:
    """What a failed check said, in one clause: its last line (the error), else its status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"exit status {exit_status}"


def check_is_lasting(exit_status: int) -> bool:
    """Whether a failed check's verdict is the interpreter's own (an import, the loader:
    kept for the tree), not the moment's (killed: asked again at the next build)."""
    return exit_status != KILLED


def choose_container_python(
    request: PythonRequest, found: Iterable[Interpreter], refused: Mapping[Interpreter, str]
) -> Interpreter | None:
    """The local build's choice (the newest that serves ``request``) among ``found`` but
    those that did not run in the stack image (``refused``: each with why)."""
    return choose_interpreter(request, [i for i in found if i not in refused])


def no_container_python(
    request: PythonRequest,
    found: Iterable[Interpreter],
    refused: Mapping[Interpreter, str],
    image: str,
    download: str,
) -> str:
    """The one line a container build fails with when nothing it may use serves
    ``request``: the local build's (:func:`no_interpreter`), unless one that would have
    served it did not run in the stack image; then which, why, and what to do."""
    usable = [i for i in found if i not in refused]
    failed = sorted((i for i in refused if i.matches(request.version)), key=lambda i: i.version)
    if not failed:
        return no_interpreter(request, usable, download)
    names = ", ".join(f"{format_version(i.version)} ({i.source})" for i in failed)
    have = sorted({i.version for i in usable if i.version >= MINIMUM})
    listed = ", ".join(format_version(v) for v in have) or "none"
    return (
        f"Python {request.describe()} was requested (in {request.origin}), but the server's "
        f"Python {names} does not run in the stack image {image} ({refused[failed[-1]]}): "
        f"the server's system is not the image's, {STACK_SYSTEM}. Ask in {request.origin} "
        f"for one that runs there ({listed}), or run the server on {STACK_SYSTEM}, whose "
        "interpreters run in the image."
    )
