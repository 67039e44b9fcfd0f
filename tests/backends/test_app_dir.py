"""Each dyno's app directory (backends/appdir.py) without a server, in each of its forms: an
overlay in a user namespace (no root needed) and a copy of the release. The root overlay is
tested end to end in tests/integration/test_app_dir.py, with both of these."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynos.backends.appdir import AppCopy, unprivileged_overlay_works
from dynos.backends.base import DynoSpec
from dynos.backends.local import LocalBackend
from dynos.backends.sandbox import Sandboxes
from dynos.core.sizes import DEFAULT_SIZE
from tests.backends.test_containment import OPENED, Events, dynos_cleaned_up  # noqa: F401

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.anyio,
    pytest.mark.usefixtures("dynos_cleaned_up"),  # imported above: test_containment.py's
]


@pytest.fixture
def anyio_backend() -> object:
    """uvloop, the server's event loop."""
    return ("asyncio", {"use_uvloop": True})


# Says what it found, writes in its app directory (a new file, a change to the release's
# file, a socket), says it did, and stays.
WRITE = (
    'echo "found $(ls | tr "\\n" " ")$(cat data.txt) home=$HOME pwd=$(pwd)"; '
    "echo changed > data.txt; echo new > new.txt; "
    "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"ctl.sock\")'; "
    "echo wrote; exec sleep 1000"
)


def spec(release: Path, key: str) -> DynoSpec:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(release)}
    return DynoSpec(key, "app", key, WRITE, release, env, None, DEFAULT_SIZE)


def release_in(tmp_path: Path) -> Path:
    release = tmp_path / "slugs" / "release"
    release.mkdir(parents=True)
    (release / "data.txt").write_text("original\n")
    return release


async def scenario(sandboxes: Sandboxes, release: Path, copies: Path | None = None) -> None:
    events = Events()
    local = LocalBackend(events, sandboxes=sandboxes)
    OPENED.append(local)
    await local.start(spec(release, "one"))
    await events.until(lambda: events.lines.count("wrote") == 1)
    await local.start(spec(release, "two"))  # a second dyno of the same release
    await events.until(lambda: events.lines.count("wrote") == 2)
    first, second = [line for line in events.lines if line.startswith("found ")]
    for found in (first, second):  # each from the release alone, HOME its app dir
        assert found.startswith("found data.txt original home="), found
        home, pwd = found.split(" home=")[1].split(" pwd=")
        assert home == pwd
    if copies is not None:
        assert len(list(copies.iterdir())) == 2
    await local.stop("one", grace=5)
    await local.stop("two", grace=5)
    assert sorted(p.name for p in release.iterdir()) == ["data.txt"]
    assert (release / "data.txt").read_text() == "original\n"
    if copies is not None:
        assert list(copies.iterdir()) == []  # each copy went with its dyno


async def test_a_copy_of_the_release_is_each_dynos_own_and_goes_with_it(tmp_path: Path) -> None:
    release = release_in(tmp_path)
    copies = tmp_path / "app-dirs"
    await scenario(Sandboxes(app_copies=AppCopy(copies)), release, copies)


async def test_an_overlay_in_a_user_namespace_is_each_dynos_own_and_goes_with_it(
    tmp_path: Path,
) -> None:
    if not unprivileged_overlay_works(tmp_path):
        pytest.skip("this kernel refuses overlayfs in unprivileged user namespaces")
    release = release_in(tmp_path)
    await scenario(Sandboxes(unprivileged_overlays=True), release)
