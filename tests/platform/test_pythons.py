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
from dynos.platform.python_copy import needed_libraries, os_error_cause
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


def prefix_of_its_own(real: Path, minor: str, prefix: Path, *, copy_libraries: bool) -> None:
    """A prefix at ``prefix`` holding ``real``'s binary (a copy, to change under a copy of
    it), its stdlib (linked) and its libpython (copied, or linked)."""
    (prefix / "bin").mkdir(parents=True)
    shutil.copy2(real / "bin" / minor, prefix / "bin" / minor)
    (prefix / "lib").mkdir()
    os.symlink(real / "lib" / minor, prefix / "lib" / minor)
    for library in (real / "lib").glob(f"lib{minor}*.so*"):
        if copy_libraries:
            shutil.copy2(library, prefix / "lib" / library.name)
        else:
            os.symlink(library, prefix / "lib" / library.name)


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
    assert sorted(p.name for p in copy.iterdir()) == [".dynos-copy", "bin", "include", "lib"]
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


def test_a_layout_the_copy_does_not_know_is_named_not_blamed_on_the_disk(
    tmp_path: Path,
) -> None:
    pythons = HostPythons(tmp_path / "pythons", shared=True, uv=None)
    prefix = tmp_path / "broken"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3.12").write_bytes(b"\x7fELF")  # no lib/python3.12 beside it
    interpreter = Interpreter((3, 12, 1), str(prefix / "bin" / "python3.12"), "PATH")

    with pytest.raises(PlatformError) as raised:
        pythons.relocatable(interpreter)
    message = raised.value.message
    assert f"The layout of Python 3.12.1 in {prefix} cannot be copied: " in message
    assert f"{prefix}/lib/python3.12/os.py is not there" in message
    assert "pyenv install 3.12.1, or uv python install 3.12.1; then build again" in message
    assert "writable directory" not in message  # not a disk's or a permission's fault
    assert not any((tmp_path / "pythons").iterdir())  # no partial copy left behind

    # A Fedora-style platlibdir: the stdlib's C modules under lib64, which the copy skips.
    (prefix / "lib" / "python3.12").mkdir(parents=True)
    (prefix / "lib" / "python3.12" / "os.py").write_text("")
    (prefix / "lib64" / "python3.12" / "lib-dynload").mkdir(parents=True)
    with pytest.raises(PlatformError) as raised:
        pythons.relocatable(interpreter)
    assert "/lib/python3.12/lib-dynload is in lib64/python3.12" in raised.value.message


def test_a_copy_is_made_again_when_its_interpreter_changes_and_old_ones_stay(
    tmp_path: Path,
) -> None:
    real, minor, version = pyenv_tree()
    prefix = tmp_path / "prefix"  # a prefix of our own, to change under the copy
    prefix_of_its_own(real, minor, prefix, copy_libraries=False)
    pythons = HostPythons(tmp_path / "pythons", shared=True, uv=None)
    interpreter = Interpreter(version, str(prefix / "bin" / minor), "PATH")

    first = pythons.relocatable(interpreter)
    assert first.name.startswith(f"PATH-{'.'.join(map(str, version))}-")
    assert pythons.relocatable(interpreter) == first  # unchanged: the same copy, not remade
    linked = tmp_path / "venv-python"  # as a release's virtualenv links to it
    linked.symlink_to(first / "bin" / minor)

    # The interpreter reinstalled (its binary changed): a copy under a new name; the old one
    # stays, whole, for the release that links to it.
    os.utime(prefix / "bin" / minor, ns=(1, 1))
    second = pythons.relocatable(interpreter)
    assert second != first and second.parent == first.parent
    assert (second / "bin" / minor).is_file() and (first / "bin" / minor).is_file()
    done = subprocess.run([str(linked), "-I", "-c", "print(1)"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr

    # A copy without its marker (made by an older dynos, whole prefix and all, or cut short
    # by hand) under this name is not trusted: made again in its place.
    (second / ".dynos-copy").unlink()
    (second / "share").mkdir()
    assert pythons.relocatable(interpreter) == second
    assert (second / ".dynos-copy").is_file() and not (second / "share").exists()
    assert sorted(p.name for p in pythons.dir.iterdir()) == sorted([first.name, second.name])

    # Another interpreter of the same version (another prefix) has a copy of its own.
    other = tmp_path / "other"
    shutil.copytree(prefix, other, symlinks=True)
    (other / "bin" / minor).write_bytes((prefix / "bin" / minor).read_bytes() + b"\0")
    theirs = pythons.relocatable(Interpreter(version, str(other / "bin" / minor), "PATH"))
    assert theirs not in (first, second)


def test_a_copy_that_cannot_be_written_says_what_to_do(tmp_path: Path) -> None:
    # Where <home>/pythons cannot be made (a file is in the way): the same, not an OSError.
    (tmp_path / "home").write_text("a file, not a directory")
    elsewhere = HostPythons(tmp_path / "home" / "pythons", shared=True, uv=None)
    real, _, version = pyenv_tree()
    with pytest.raises(PlatformError) as raised:
        elsewhere.relocatable(Interpreter(version, str(real / "bin" / "python3"), "pyenv"))
    assert "Not a directory" in raised.value.message
    assert f"make {tmp_path / 'home' / 'pythons'} a writable directory" in raised.value.message


def test_a_copy_failure_of_many_files_is_told_in_one_short_clause() -> None:
    failures = [
        (f"/src/{n}", f"/dst/{n}", f"[Errno 28] No space left on device: {n}") for n in range(500)
    ]
    cause = os_error_cause(shutil.Error(failures))
    assert cause == "[Errno 28] No space left on device: 0 and 499 more"
    assert len(os_error_cause(OSError("x" * 5000))) < 210


def readelf_needed(path: Path) -> list[str]:
    out = subprocess.run(
        ["readelf", "-d", str(path)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def test_the_libraries_a_copy_needs_are_read_as_readelf_reads_them() -> None:
    prefix, minor, _ = pyenv_tree()
    dynload = prefix / "lib" / minor / "lib-dynload"
    files = [prefix / "bin" / minor, *sorted(dynload.glob("*.so"))[:20]]
    for path in files:
        assert needed_libraries(path) == readelf_needed(path), path
    assert "libz.so.1" in needed_libraries(next(dynload.glob("zlib.*.so")))
    assert needed_libraries(prefix / "lib" / minor / "os.py") == []  # not an ELF file


def test_a_self_contained_prefix_has_its_own_libraries_copied(tmp_path: Path) -> None:
    """A conda-style prefix keeps the libraries its modules load in its own lib (found by
    their RUNPATH): the copy takes those they need, and only those."""
    real, minor, version = pyenv_tree()
    system = Path("/lib/x86_64-linux-gnu")
    prefix = tmp_path / "conda"
    prefix_of_its_own(real, minor, prefix, copy_libraries=True)
    ssl_needs = readelf_needed(next((prefix / "lib" / minor / "lib-dynload").glob("_ssl.*.so")))
    theirs = [name for name in ssl_needs if name.startswith(("libssl", "libcrypto"))]
    for name in ["libz.so.1", *theirs]:
        shutil.copy2(system / name, prefix / "lib" / name)
    shutil.copy2(system / "libz.so.1", prefix / "lib" / "libunused.so.1")  # nobody asks
    pythons = HostPythons(tmp_path / "pythons", shared=True, uv=None)

    copy = pythons.relocatable(Interpreter(version, str(prefix / "bin" / minor), "PATH"))

    libraries = {p.name for p in (copy / "lib").iterdir() if not p.name.startswith("libpython")}
    assert libraries == {minor, "libz.so.1", *theirs}
    assert not list((copy / "lib" / minor / "lib-dynload").glob("_tkinter.*"))
