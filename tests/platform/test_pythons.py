"""A host interpreter's copy in ``<home>/pythons``: a real interpreter tree (pyenv's) copied
with only its own files, which runs from the copy with its own ``libpython``; and a copy that
cannot be made is a PlatformError that says what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dynos.core.python_build import Interpreter
from dynos.errors import PlatformError
from dynos.platform.pythons import HostPythons

PYENV = Path.home() / ".pyenv" / "versions"


def pyenv_tree() -> tuple[Path, str, tuple[int, int, int]]:
    """A pyenv install (shared libpython, pip, idle and man pages beside it): its prefix,
    its minor name (python3.12) and version."""
    for prefix in sorted(PYENV.glob("3.1[0-9].*"), reverse=True):
        parts = prefix.name.split(".")
        minor = f"python{parts[0]}.{parts[1]}"
        if (prefix / "bin" / minor).is_file() and all(p.isdigit() for p in parts):
            version = (int(parts[0]), int(parts[1]), int(parts[2]))
            return prefix, minor, version
    raise AssertionError(f"no Python 3.10+ in {PYENV}: this test needs one")


def test_only_the_interpreters_own_files_are_copied_and_the_copy_runs(tmp_path: Path) -> None:
    prefix, minor, version = pyenv_tree()
    pythons = HostPythons(tmp_path / "pythons", shared=True, uv=None)
    interpreter = Interpreter(version, str(prefix / "bin" / "python3"), "pyenv")

    copy = pythons.relocatable(interpreter)

    # Of the prefix's bin (pip, idle, pydoc, 2to3, python-config...): the interpreter.
    assert sorted(p.name for p in (copy / "bin").iterdir()) == ["python3", minor]
    assert os.readlink(copy / "bin" / "python3") == minor
    # Of its lib (pkgconfig, the stable ABI's libpython3.so...): the stdlib and libpython.
    shared = sorted(p.name for p in (prefix / "lib").glob(f"lib{minor}*.so*"))
    assert sorted(p.name for p in (copy / "lib").iterdir()) == sorted([minor, *shared])
    assert sorted(p.name for p in (copy / "include").iterdir()) == [minor]
    assert sorted(p.name for p in copy.iterdir()) == ["bin", "include", "lib"]  # no share/
    assert (prefix / "lib" / minor / "site-packages").is_dir()  # pip, in pyenv's
    assert not (copy / "lib" / minor / "site-packages").exists()
    assert not (copy / "lib" / minor / "test").exists()
    assert (copy / "lib" / minor / "os.py").is_file()

    # It runs, with its own libpython when it is a shared build, wherever it is copied.
    moved = tmp_path / "elsewhere"
    shutil.copytree(copy, moved, symlinks=True)
    script = (
        "import ssl, sqlite3, json, sys; print(sys.prefix); print(open('/proc/self/maps').read())"
    )
    done = subprocess.run(
        [str(moved / "bin" / minor), "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(moved)
    if shared:
        assert f"{moved}/lib/lib{minor}" in done.stdout
        assert str(prefix) not in done.stdout


def test_a_copy_that_cannot_be_made_says_what_to_do(tmp_path: Path) -> None:
    prefix = tmp_path / "broken"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3.12").write_bytes(b"\x7fELF")  # no lib/python3.12 beside it
    pythons = HostPythons(tmp_path / "pythons", shared=True, uv=None)
    interpreter = Interpreter((3, 12, 1), str(prefix / "bin" / "python3.12"), "PATH")

    with pytest.raises(PlatformError) as raised:
        pythons.relocatable(interpreter)
    message = raised.value.message
    assert "Could not copy Python 3.12.1 from" in message and str(prefix) in message
    assert "then build again" in message
    assert not any((tmp_path / "pythons").iterdir())  # no partial copy left behind

    # Where <home>/pythons cannot be made (a file is in the way): the same, not an OSError.
    (tmp_path / "home").write_text("a file, not a directory")
    elsewhere = HostPythons(tmp_path / "home" / "pythons", shared=True, uv=None)
    real, _, version = pyenv_tree()
    with pytest.raises(PlatformError) as raised:
        elsewhere.relocatable(Interpreter(version, str(real / "bin" / "python3"), "pyenv"))
    assert "Not a directory" in raised.value.message
    assert f"make {tmp_path / 'home' / 'pythons'} a writable directory" in raised.value.message
