"""A server's interpreter is offered to container builds only once it ran in the stack image,
against the real engine: a tree that runs there is used; one that does not (here a copy
whose ``_ssl`` cannot load, as a tree built on another system's libssl cannot) is not, the
build falling to the next interpreter or failing with the version and what to do; and the
verdict is kept per tree and stack image, not asked again per build.

Needs a running engine, the stack image and pyenv's Python 3.13 and 3.12.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dynos.core.containers import DEFAULT_STACK_IMAGE
from dynos.core.python_build import PythonRequest
from dynos.errors import BuildFailed, PlatformError
from dynos.platform.container_pythons import ContainerPythons
from dynos.platform.pythons import HostPythons

pytestmark = pytest.mark.anyio

PYENV = Path.home() / ".pyenv" / "versions"
SERVER = "test-" + secrets.token_hex(6)  # labels this test's check containers


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


def newest(minor: str) -> tuple[int, int, int]:
    found = sorted(PYENV.glob(f"{minor}.*/bin/python{minor}"))
    assert found, f"this test needs pyenv's Python {minor} in {PYENV}"
    version = found[-1].parent.parent.name
    major, minor_number, micro = (int(part) for part in version.split("."))
    return major, minor_number, micro


async def test_a_tree_that_does_not_run_in_the_stack_image_is_not_offered(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    host = HostPythons(tmp_path / "pythons", shared=True, uv=None)
    pythons = ContainerPythons(engine, DEFAULT_STACK_IMAGE, host, server=SERVER)
    v313, v312 = newest("3.13"), newest("3.12")
    pinned = PythonRequest(v313[:2], ".python-version")

    # This server is bookworm, as the image is: its 3.13 runs there and is used.
    chosen = await pythons.choose(pinned)
    assert chosen.tree is not None and chosen.interpreter.version == v313
    assert chosen.line.endswith("copied into the slug: /app/.heroku/python/bin/python3.13")
    image = engine.images.get(DEFAULT_STACK_IMAGE).id
    assert [(k[0], k[2], v) for k, v in pythons.verdicts.items()] == [
        (str(chosen.tree), image, None)
    ]
    assert not left_checks(engine)  # each check's container removed after it

    # The same tree, its ssl module's library not loadable (as another system's libssl
    # would not be), checked by another server start: refused, with what it said.
    dynload = chosen.tree / "lib" / "python3.13" / "lib-dynload"
    (ssl_module,) = dynload.glob("_ssl.*.so")
    aside = tmp_path / ssl_module.name
    ssl_module.rename(aside)
    restarted = ContainerPythons(engine, DEFAULT_STACK_IMAGE, host, server=SERVER)
    with pytest.raises(BuildFailed) as raised:
        await restarted.choose(pinned)
    message = raised.value.message
    assert f"the server's Python {'.'.join(map(str, v313))} (pyenv) does not run in the " in message
    assert (
        f"stack image {DEFAULT_STACK_IMAGE} (ModuleNotFoundError: No module named '_ssl')"
        in message
    )
    assert "Ask in .python-version for one that runs there (" in message
    assert "run the server on Debian 12 (bookworm)" in message

    # An app that asks for no version gets the newest that runs there: not that 3.13.
    unpinned = await restarted.choose(PythonRequest(None, "default"))
    assert unpinned.interpreter.version < v313 and unpinned.interpreter.version >= v312
    assert unpinned.tree is not None and unpinned.tree != chosen.tree

    # The verdict is kept: the tree mended, this server still does not offer it (one check
    # per tree and stack image, not one per build); a server started anew checks it again.
    aside.rename(ssl_module)
    with pytest.raises(BuildFailed):
        await restarted.choose(pinned)
    checked = [k for k in restarted.verdicts if k[0] == str(chosen.tree)]
    assert len(checked) == 1 and restarted.verdicts[checked[0]] is not None
    again = await ContainerPythons(engine, DEFAULT_STACK_IMAGE, host, server=SERVER).choose(pinned)
    assert again.tree == chosen.tree

    # The check loads more than ssl's library: zlib's, lzma's... (here _lzma made unloadable).
    (lzma_module,) = dynload.glob("_lzma.*.so")
    lzma_module.write_bytes(b"not an ELF object")
    with pytest.raises(BuildFailed) as raised:
        await ContainerPythons(engine, DEFAULT_STACK_IMAGE, host, server=SERVER).choose(pinned)
    assert "_lzma" in raised.value.message
    assert not left_checks(engine)


async def test_an_interpreter_whose_copy_cannot_be_made_is_passed_over(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    (tmp_path / "home").write_text("a file where <home> should be: no copy can be made")
    host = HostPythons(tmp_path / "home" / "pythons", shared=True, uv=None)
    pythons = ContainerPythons(engine, DEFAULT_STACK_IMAGE, host, server=SERVER)

    # Without a version asked for: pyenv's newer ones refused, the stack image's own used.
    chosen = await pythons.choose(PythonRequest(None, "default"))
    assert chosen.tree is None and chosen.interpreter.source == "stack"

    # A version only the server has: the copy's own error, which says what to do.
    with pytest.raises(PlatformError) as raised:
        await pythons.choose(PythonRequest(newest("3.13")[:2], ".python-version"))
    assert "Could not copy Python 3.13" in raised.value.message
    assert "writable directory" in raised.value.message


def left_checks(engine: docker.DockerClient) -> list[object]:
    return list(engine.containers.list(all=True, filters={"label": f"io.dynos.server={SERVER}"}))
