"""The rules of a Python build: package manager, Python version, interpreter, cache key, lock
files, WEB_CONCURRENCY (pure, no I/O)."""

from __future__ import annotations

import json

import pytest

from dynos.core.python_build import (
    PIP,
    PIPENV,
    POETRY,
    UV,
    Interpreter,
    PackageManager,
    PythonRequest,
    cache_changes,
    cache_key,
    choose_interpreter,
    detect_package_manager,
    no_interpreter,
    parse_python_version_file,
    parse_runtime_txt,
    pipfile_lock_requirements,
    poetry_lock_requirements,
    requested_python,
    reuse_environment,
    self_contained,
    web_concurrency,
)
from dynos.errors import BuildFailed


@pytest.mark.parametrize(
    ("files", "manager"),
    [
        ({"requirements.txt", "Procfile"}, PIP),
        ({"uv.lock", "pyproject.toml"}, UV),
        ({"poetry.lock", "pyproject.toml"}, POETRY),
        ({"Pipfile.lock", "Pipfile"}, PIPENV),
    ],
)
def test_the_package_manager_is_the_one_whose_file_the_app_has(
    files: set[str], manager: object
) -> None:
    assert detect_package_manager(files) == manager


def test_several_package_manager_files_fail_naming_them_in_herokus_order() -> None:
    with pytest.raises(BuildFailed) as failed:
        detect_package_manager({"uv.lock", "requirements.txt", "Pipfile.lock"})
    message = failed.value.message
    assert "Multiple Python package manager files were found" in message
    assert message.index("Pipfile.lock (Pipenv)") < message.index("requirements.txt (pip)")
    assert message.index("requirements.txt (pip)") < message.index("uv.lock (uv)")


def test_no_package_manager_file_fails_saying_what_to_add() -> None:
    with pytest.raises(BuildFailed, match=r"add a requirements\.txt"):
        detect_package_manager({"Procfile"})
    with pytest.raises(BuildFailed, match="pipenv lock"):
        detect_package_manager({"Procfile", "Pipfile"})


def test_python_version_files_in_herokus_forms() -> None:
    assert parse_python_version_file("3.13\n") == (3, 13)
    assert parse_python_version_file("# the app's Python\n\n 3.13.1 \n") == (3, 13, 1)
    assert parse_runtime_txt("python-3.12.7\n") == (3, 12, 7)
    assert parse_runtime_txt("python-3.12") == (3, 12)
    for wrong in ("python-3.13", "3", "3.13.1.2", "v3.13", "3.13\n3.12", ""):
        with pytest.raises(BuildFailed, match=r"\.python-version"):
            parse_python_version_file(wrong)
    for wrong in ("3.12.7", "python-3", "python 3.12"):
        with pytest.raises(BuildFailed, match=r"runtime\.txt"):
            parse_runtime_txt(wrong)


def test_the_version_comes_from_runtime_txt_then_python_version_then_pipfile_lock() -> None:
    lock = json.dumps({"_meta": {"requires": {"python_version": "3.11"}}, "default": {}})
    every = {"runtime.txt": "python-3.12.7", ".python-version": "3.13", "Pipfile.lock": lock}
    assert requested_python(every, PIPENV) == PythonRequest((3, 12, 7), "runtime.txt")
    del every["runtime.txt"]
    assert requested_python(every, PIPENV) == PythonRequest((3, 13), ".python-version")
    del every[".python-version"]
    assert requested_python(every, PIPENV) == PythonRequest((3, 11), "Pipfile.lock")
    assert requested_python({}, PIP) == PythonRequest(None, "default")


HOST = [
    Interpreter((3, 11, 2), "/usr/bin/python3.11", "PATH"),
    Interpreter((3, 13, 0), "/root/.pyenv/versions/3.13.0/bin/python3", "pyenv"),
    Interpreter((3, 12, 1), "/root/.pyenv/versions/3.12.1/bin/python3", "pyenv"),
    Interpreter((3, 6, 15), "/root/.pyenv/versions/3.6.15/bin/python3", "pyenv"),
]


def test_the_newest_matching_interpreter_serves_a_request() -> None:
    def chosen(version: tuple[int, ...] | None) -> str | None:
        found = choose_interpreter(PythonRequest(version, "x"), HOST)
        return found.path if found else None

    assert chosen((3, 13)) == "/root/.pyenv/versions/3.13.0/bin/python3"
    assert chosen((3, 11, 2)) == "/usr/bin/python3.11"
    assert chosen((3, 11, 7)) is None  # exactly that patch release, or nothing
    assert chosen((3, 14)) is None
    assert chosen(None) == "/root/.pyenv/versions/3.13.0/bin/python3"
    assert chosen((3, 6)) is None  # too old for uv's virtualenvs


def test_no_matching_interpreter_is_one_line_with_what_was_asked_what_is_there_and_a_fix() -> None:
    line = no_interpreter(
        PythonRequest((3, 14), ".python-version"), HOST, "uv could not download it (dns error)"
    )
    assert "\n" not in line
    assert "Python 3.14 was requested (in .python-version)" in line
    assert "this server has Python 3.11.2, 3.12.1, 3.13.0" in line
    assert "uv could not download it (dns error)" in line
    assert "install Python 3.14 on the server (with pyenv, or as python3.X on its PATH)" in line


def test_the_cache_key_changes_with_python_manager_or_dependencies() -> None:
    py313 = Interpreter((3, 13, 0), "/usr/bin/python3.13", "PATH")

    def key_of(
        interpreter: Interpreter = py313,
        manager: PackageManager = PIP,
        text: bytes = b"django==5.2\n",
        platform: str = "linux-x86_64",
    ) -> dict[str, str]:
        return cache_key(interpreter, manager, text, platform)

    key = key_of()
    assert cache_changes(None, key) == []
    assert cache_changes(key, key_of()) == []
    assert cache_changes(key, key_of(text=b"django==5.1\n")) == [
        "The contents of requirements.txt changed"
    ]
    assert cache_changes(key, key_of(Interpreter((3, 12, 1), "/usr/bin/python3.12", "PATH"))) == [
        "The Python version changed from 3.13.0 to 3.12.1"
    ]
    moved = Interpreter((3, 13, 0), "/root/.pyenv/versions/3.13.0/bin/python3", "pyenv")
    assert cache_changes(key, key_of(moved)) == [
        "The Python interpreter moved from /usr/bin/python3.13 to "
        "/root/.pyenv/versions/3.13.0/bin/python3"
    ]
    assert cache_changes(key, key_of(platform="linux-aarch64")) == [
        "The platform changed from linux-x86_64 to linux-aarch64"
    ]
    assert cache_changes(key, key_of(manager=UV, text=b"x")) == [
        "The package manager changed from pip to uv"
    ]
    older = {k: key[k] for k in ("python", "package_manager", "dependencies")}
    assert cache_changes(older, key) == ["The cache was made by another version of dynos"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# nothing\n\n",
        "Django==5.2.19\ngunicorn>=23 ; python_version >= '3.11'  # the server\n",
        "psycopg[binary]==3.3.9\nwhitenoise~=6.12\n",
        "six==1.17.0 \\\n    --hash=sha256:abc\n",
        "--index-url https://pypi.example/simple\nrequests\n",
        "--extra-index-url=https://x.example/simple\nrequests[socks]\n",
        "pkg @ https://example.com/pkg-1.0.tar.gz#sha256=abc\n",
    ],
)
def test_a_requirements_file_that_says_all_it_installs_is_self_contained(text: str) -> None:
    assert self_contained(text)


@pytest.mark.parametrize(
    "text",
    [
        "-r base.txt\n",
        "Django\n--requirement=other.txt\n",
        "-c constraints.txt\nDjango\n",
        "-e .\n",
        ".\n",
        "./vendor/pkg\n",
        "/abs/pkg\n",
        "vendor/pkg-1.0-py3-none-any.whl\n",
        "pkg-1.0.tar.gz\n",
        "pkg @ file:///srv/pkg\n",
        "pkg @ git+https://github.com/x/pkg@main\n",
        "Django==${DJANGO_VERSION}\n",
        "--find-links ./wheels\nDjango\n",
        "-f ./wheels\n",
    ],
)
def test_a_requirements_file_that_reads_anything_else_is_not(text: str) -> None:
    assert not self_contained(text)


def test_the_cached_environment_is_reused_only_when_uv_has_nothing_to_decide() -> None:
    pins = "Django==5.2.19\n"
    assert reuse_environment(True, True, False, PIP, pins)
    assert reuse_environment(True, True, False, POETRY, "")  # its pins are the lock's
    assert reuse_environment(True, True, False, PIPENV, "{}")
    assert not reuse_environment(False, True, False, PIP, pins)  # another key
    assert not reuse_environment(True, False, False, PIP, pins)  # not sealed after uv
    assert not reuse_environment(True, True, True, PIP, pins)  # a hook
    assert not reuse_environment(True, True, False, UV, "")  # uv sync installs the project
    assert not reuse_environment(True, True, False, PIP, "-r base.txt\n")


def test_a_pipfile_lock_becomes_its_default_packages_pinned() -> None:
    lock = {
        "_meta": {},
        "default": {
            "six": {"version": "==1.17.0", "hashes": ["sha256:x"]},
            "colorama": {"version": "==0.4.6", "markers": "sys_platform == 'win32'"},
        },
        "develop": {"pytest": {"version": "==8.0.0"}},
    }
    assert pipfile_lock_requirements(json.dumps(lock)) == [
        "colorama==0.4.6 ; sys_platform == 'win32'",
        "six==1.17.0",
    ]
    lock["default"] = {"mine": {"path": "."}}
    with pytest.raises(BuildFailed, match="without a pinned version"):
        pipfile_lock_requirements(json.dumps(lock))
    with pytest.raises(BuildFailed, match="not valid JSON"):
        pipfile_lock_requirements("{")


def test_a_poetry_lock_becomes_its_main_group_pinned_in_both_formats() -> None:
    poetry2 = """
[[package]]
name = "six"
version = "1.17.0"
groups = ["main"]
files = []

[[package]]
name = "pytest"
version = "8.0.0"
groups = ["dev"]
files = []

[[package]]
name = "colorama"
version = "0.4.6"
groups = ["main", "dev"]
markers = "sys_platform == \\"win32\\""
files = []
"""
    assert poetry_lock_requirements(poetry2) == [
        'colorama==0.4.6 ; sys_platform == "win32"',
        "six==1.17.0",
    ]
    poetry1 = '[[package]]\nname = "six"\nversion = "1.16.0"\ncategory = "main"\noptional = false\n'
    assert poetry_lock_requirements(poetry1) == ["six==1.16.0"]
    git = '[[package]]\nname = "x"\nversion = "1"\ngroups = ["main"]\n'
    git += '[package.source]\ntype = "git"\n'
    with pytest.raises(BuildFailed, match="from a git"):
        poetry_lock_requirements(git)
    bad = '[[package]]\nname = "x; rm -rf /"\nversion = "1"\ngroups = ["main"]\n'
    with pytest.raises(BuildFailed, match="uv cannot read"):
        poetry_lock_requirements(bad)


def test_web_concurrency_by_dyno_size_as_herokus_python_buildpack_sets_it() -> None:
    # Heroku's hosts report 8 cores to every dyno but Performance-M's 2.
    assert web_concurrency(512, 8) == 2  # Eco, Basic, Standard-1X
    assert web_concurrency(1024, 8) == 4  # Standard-2X
    assert web_concurrency(2560, 2) == 5  # Performance-M: by its cores
    assert web_concurrency(14336, 8) == 17  # Performance-L
    assert web_concurrency(100, 8) == 1
