"""Which interpreter a container build may use, given which of the server's ran in the stack
image; the line a build fails with when none that serves it may be used."""

from __future__ import annotations

from dynos.core.container_pythons import (
    check_command,
    check_failure,
    check_is_lasting,
    choose_container_python,
    no_container_python,
)
from dynos.core.python_build import Interpreter, PythonRequest

STACK = Interpreter((3, 11, 2), "/usr/bin/python3.11", "stack")
PYENV_313 = Interpreter((3, 13, 0), "/root/.pyenv/versions/3.13.0/bin/python3.13", "pyenv")
PYENV_312 = Interpreter((3, 12, 1), "/root/.pyenv/versions/3.12.1/bin/python3.12", "pyenv")
FOUND = [STACK, PYENV_313, PYENV_312]
IMAGE = "dynos/stack:bookworm"
LIBSSL = "ImportError: libssl.so.1.1: cannot open shared object file"


def test_a_refused_interpreter_is_passed_over_for_the_next_that_serves() -> None:
    anything = PythonRequest(None, "default")
    assert choose_container_python(anything, FOUND, {}) == PYENV_313
    assert choose_container_python(anything, FOUND, {PYENV_313: LIBSSL}) == PYENV_312
    both = {PYENV_313: LIBSSL, PYENV_312: LIBSSL}
    assert choose_container_python(anything, FOUND, both) == STACK
    pinned = PythonRequest((3, 13), ".python-version")
    assert choose_container_python(pinned, FOUND, {PYENV_313: LIBSSL}) is None


def test_a_pinned_version_that_does_not_run_there_is_named_with_what_to_do() -> None:
    pinned = PythonRequest((3, 13), ".python-version")
    said = no_container_python(pinned, FOUND, {PYENV_313: LIBSSL}, IMAGE, "none downloaded")
    assert said == (
        "Python 3.13 was requested (in .python-version), but the server's Python 3.13.0 "
        f"(pyenv) does not run in the stack image {IMAGE} ({LIBSSL}): the server's system is "
        "not the image's, Debian 12 (bookworm). Ask in .python-version for one that runs "
        "there (3.11.2, 3.12.1), or run the server on Debian 12 (bookworm), whose "
        "interpreters run in the image."
    )
    # A version nobody has: the local build's own line, which lists only what may be used.
    missing = PythonRequest((3, 14), ".python-version")
    said = no_container_python(missing, FOUND, {PYENV_313: LIBSSL}, IMAGE, "none downloaded")
    assert said.startswith("Python 3.14 was requested (in .python-version), but this server")
    assert "has Python 3.11.2, 3.12.1, and none downloaded." in said


def test_the_check_runs_the_mounted_tree_and_reports_its_last_line() -> None:
    assert check_command("python3.13") == [
        "/opt/dynos/python/bin/python3.13",
        "-I",
        "-c",
        "import ssl, sqlite3, ctypes, zlib, lzma, bz2, pyexpat, _hashlib",
    ]
    traceback = f'Traceback (most recent call last):\n  File "<string>", line 1\n{LIBSSL}\n'
    assert check_failure(1, traceback) == LIBSSL
    assert check_failure(127, "") == "exit status 127"


def test_only_the_interpreters_own_failure_is_a_lasting_verdict() -> None:
    assert check_is_lasting(1)  # an import failed: the tree does not run there
    assert check_is_lasting(127)  # the loader: a library missing in the image
    assert not check_is_lasting(137)  # killed (out of memory, a stop): asked again
