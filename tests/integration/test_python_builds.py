"""Python builds as Heroku's buildpack makes them, against a real server, real uv and PyPI:
package managers, the Python version, the build cache, hooks, config vars, .slugignore,
collectstatic, and .profile and WEB_CONCURRENCY at dyno start.

The tests share one server, each with apps of its own; those that look at the whole build
cache (one app's, alone in it) get a server of their own (``own_server``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uv import find_uv_bin

from dynos.testing.harness import RunningServer, dyno_states, wait_for
from tests.integration.conftest import each_test, started

ENVECHO = Path(__file__).parent / "apps" / "envecho"
SIX = "six==1.17.0"  # a small pure-Python package: one file


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from started(tmp_path_factory.mktemp("python-builds") / "home", "--stop-grace", "5")


@pytest.fixture
def server(shared: RunningServer) -> Iterator[RunningServer]:
    yield from each_test(shared)


def deploy(server: RunningServer, app: str, directory: Path) -> tuple[str, dict[str, Any]]:
    return server.deploy_output(app, directory)


def released(server: RunningServer, app: str, directory: Path) -> tuple[str, Path]:
    """Deploy ``directory``, which must release: the output and the new slug's path."""
    output, last = deploy(server, app, directory)
    assert "release" in last, f"{output}\n{last}"
    release = last["release"]
    assert isinstance(release, dict)
    return output, server.home / "slugs" / release["slug"]["id"]


def envecho(tmp_path: Path, name: str = "app", **files: str) -> Path:
    """envecho with ``files`` added (by their paths in the app)."""
    app = tmp_path / name
    shutil.copytree(ENVECHO, app)
    for key, text in files.items():
        path = app / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return app


def web_env(server: RunningServer, app: str) -> dict[str, str]:
    """The environment of the app's web dyno, once it is up."""

    def current() -> dict[str, str] | None:
        if dyno_states(server, app) != {"web.1": "up"}:
            return None
        with server.router(app) as router:
            response = router.get("/")
        env: dict[str, str] | None = response.json()["env"] if response.status_code == 200 else None
        return env

    wait_for(current, 60, f"{app}'s web.1 up")
    got = current()
    assert got is not None
    return got


def installed(slug: Path, name: str) -> bool:
    return any(slug.glob(f".venv/lib/python3.*/site-packages/{name}"))


def test_a_python_version_the_server_lacks_fails_in_one_line_and_the_old_release_runs(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("pyver")
    released(server, "pyver", envecho(tmp_path, **{"requirements.txt": ""}))
    app = envecho(tmp_path, "wants314", **{"requirements.txt": "", ".python-version": "3.14\n"})
    output, last = deploy(server, "pyver", app)
    assert "error" in last, output
    message = last["error"]["message"]  # type: ignore[index]
    assert "\n" not in message
    assert message.startswith("Python 3.14 was requested (in .python-version), but this server")
    assert "install Python 3.14 on the server (with pyenv" in message
    with server.api() as api:
        releases = api.get("/apps/pyver/releases").json()
    assert [r["version"] for r in releases] == [1, 2]  # v2 still current, no v3
    # runtime.txt, as Heroku reads it, with a version the server has.
    app = envecho(tmp_path, "wants311", **{"requirements.txt": "", "runtime.txt": "python-3.11"})
    output, slug = released(server, "pyver", app)
    assert "Using Python 3.11 specified in runtime.txt" in output
    assert "version_info = 3.11." in (slug / ".venv" / "pyvenv.cfg").read_text()


def test_a_rebuild_with_the_same_dependencies_installs_nothing(
    own_server: RunningServer, tmp_path: Path
) -> None:
    server = own_server  # its app's build cache alone in the home
    server.create_app("cached")
    app = envecho(tmp_path, **{"requirements.txt": SIX + "\n"})
    output, slug = released(server, "cached", app)
    assert "Installing dependencies with uv from requirements.txt (pip)" in output
    assert "+ six==1.17.0" in output and "Saving cache" in output
    assert installed(slug, "six.py")

    cache = server.home / "build-cache"
    [app_cache] = cache.iterdir()
    wait_for(lambda: (app_cache / "key.json").exists(), what="the first build's cache saved")
    # The first build downloaded into a uv cache of its own, linked into its environment:
    # the app's uv/ is a copy of it, which shares no file with the released slug.
    assert not (slug / ".venv" / "uv-cache").exists() and not (app_cache / "incoming").exists()
    assert list((app_cache / "uv").glob("archive-v0/*/six.py"))
    assert not file_ids(app_cache / "uv") & file_ids(slug / ".venv")
    [six] = slug.glob(".venv/lib/python3.*/site-packages/six.py")
    assert six.stat().st_nlink == 1
    output, again = released(server, "cached", app)
    assert "Restoring cache" in output
    # uv does not even run: the environment was sealed right after its install.
    assert "requirements.txt (pip) is unchanged since the cached environment" in output, output
    assert "Installed" not in output and "Checked" not in output, output
    assert installed(again, "six.py") and again != slug

    def sealed() -> bool:  # root's between builds, writable by root only, whatever dynos did
        try:
            saved = [p.lstat() for p in [app_cache, *app_cache.rglob("*")]]
        except FileNotFoundError:  # the background save renamed its copy under the walk
            return False
        return (app_cache / "key.json").exists() and all(
            (i.st_uid, i.st_gid) == (0, 0) and (stat.S_ISLNK(i.st_mode) or not i.st_mode & 0o7022)
            for i in saved
        )

    wait_for(sealed, what="the build cache, root's and sealed after the save")
    assert stat.S_IMODE((app_cache / "venv").stat().st_mode) == 0o700

    (app / "requirements.txt").write_text("six==1.16.0\n")
    output, _ = released(server, "cached", app)
    assert "Discarding cache since:\n       - The contents of requirements.txt changed" in output
    assert "+ six==1.16.0" in output


def file_ids(root: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_dev, p.lstat().st_ino) for p in root.rglob("*") if p.is_file()}


def test_a_failed_first_build_keeps_its_downloads_for_the_next(
    own_server: RunningServer, tmp_path: Path
) -> None:
    server = own_server  # its app's build cache alone in the home
    server.create_app("failing")
    # The hook runs after uv: a uv of its own must not write where the build's downloads
    # were, and what it leaves there must not replace them (it once did).
    hook = 'echo "hook cache: $UV_CACHE_DIR"; mkdir -p .venv/uv-cache/junk; exit 3\n'
    app = envecho(tmp_path, **{"requirements.txt": SIX + "\n", "bin/post_compile": hook})
    output, last = deploy(server, "failing", app)
    assert "error" in last and "+ six==1.17.0" in output, output
    [hook_cache] = [line for line in output.splitlines() if "hook cache: " in line]
    assert ".venv" not in hook_cache, hook_cache
    [app_cache] = (server.home / "build-cache").iterdir()
    wait_for(lambda: list((app_cache / "uv").glob("archive-v0/*/six.py")), what="six kept")
    wait_for(lambda: not (app_cache / "incoming").exists(), what="the build's own cache gone")
    assert {p.lstat().st_uid for p in [app_cache, *app_cache.rglob("*")]} == {0}
    (app / "bin" / "post_compile").unlink()
    output, _ = released(server, "failing", app)  # from the app's cache now: nothing to fetch
    assert "+ six==1.17.0" in output and "Prepared" not in output, output


def test_several_package_manager_files_fail_the_build(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("several")
    app = envecho(tmp_path, **{"requirements.txt": SIX, "Pipfile.lock": "{}"})
    _, last = deploy(server, "several", app)
    message = last["error"]["message"]  # type: ignore[index]
    assert "Multiple Python package manager files were found" in message
    assert "Pipfile.lock (Pipenv), requirements.txt (pip)" in message


def test_uv_poetry_and_pipenv_lock_files_install_with_uv(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("locks")
    project = """
        [project]
        name = "locked"
        version = "1.0"
        requires-python = ">=3.11"
        dependencies = ["six==1.17.0"]
    """
    app = envecho(tmp_path, "uvapp", **{"pyproject.toml": project, ".python-version": "3.11"})
    subprocess.run([find_uv_bin(), "lock", "--quiet"], cwd=app, check=True, timeout=120)
    output, slug = released(server, "locks", app)
    assert "Installing dependencies with uv from uv.lock (uv)" in output
    assert installed(slug, "six.py")

    poetry = """
        [[package]]
        name = "six"
        version = "1.16.0"
        description = ""
        optional = false
        python-versions = ">=2.7"
        groups = ["main"]
        files = []

        [[package]]
        name = "iniconfig"
        version = "2.0.0"
        description = ""
        optional = false
        python-versions = ">=3.7"
        groups = ["dev"]
        files = []

        [metadata]
        lock-version = "2.1"
        python-versions = ">=3.11"
        content-hash = "0"
    """
    app = envecho(tmp_path, "poetryapp", **{"poetry.lock": poetry})
    output, slug = released(server, "locks", app)
    assert "Installing dependencies with uv from poetry.lock (Poetry)" in output
    assert installed(slug, "six-1.16.0.dist-info") and not installed(slug, "iniconfig")

    pipfile = {
        "_meta": {"requires": {"python_version": "3.11"}},
        "default": {"six": {"version": "==1.17.0"}},
        "develop": {"iniconfig": {"version": "==2.0.0"}},
    }
    app = envecho(tmp_path, "pipenvapp", **{"Pipfile.lock": json.dumps(pipfile)})
    output, slug = released(server, "locks", app)
    assert "Using Python 3.11 specified in Pipfile.lock" in output
    assert installed(slug, "six-1.17.0.dist-info") and not installed(slug, "iniconfig")


def test_hooks_config_vars_slugignore_profile_and_web_concurrency(
    own_server: RunningServer, tmp_path: Path
) -> None:
    server = own_server  # its app's build cache alone in the home
    server.create_app("hooks")
    server.cli("config:set", "GREETING=hello from config", "-a", "hooks")
    app = envecho(
        tmp_path,
        **{
            "requirements.txt": "",
            "bin/pre_compile": """
                #!/bin/sh
                echo "pre_compile sees: $GREETING"
                echo "$GREETING" > made_by_pre_compile.txt
            """,
            "bin/post_compile": 'echo "post_compile runs with: $(command -v python)"\n',
            ".slugignore": "*.psd\n/big\n",
            "big/data.bin": "x" * 1000,
            "art/logo.psd": "psd",
            ".profile": "export FROM_PROFILE=yes\nexport ORDER=${ORDER:-}profile\n",
            ".profile.d/first.sh": "export ORDER=${ORDER:-}profile.d,\n",
        },
    )
    output, slug = released(server, "hooks", app)
    assert "-----> Running pre-compile hook\n       pre_compile sees: hello from config" in output
    post = f"-----> Running post-compile hook\n       post_compile runs with: {slug}/.venv/bin"
    assert post in output
    assert (slug / "made_by_pre_compile.txt").read_text() == "hello from config\n"
    assert not (slug / "big").exists() and not (slug / "art" / "logo.psd").exists()
    assert (slug / "art").is_dir() and (slug / ".slugignore").exists()
    # With hooks (which may change the dependencies or the environment) uv checks again.
    [app_cache] = (server.home / "build-cache").iterdir()
    wait_for(lambda: (app_cache / "key.json").exists(), what="the first build's cache saved")
    output, _ = released(server, "hooks", app)
    assert "Restoring cache" in output and "Installing dependencies with uv" in output, output

    env = web_env(server, "hooks")
    assert env["FROM_PROFILE"] == "yes"
    assert env["ORDER"] == "profile.d,profile"  # .profile.d's scripts first, as on Heroku
    assert env["WEB_CONCURRENCY"] == "2"  # a Standard-1X: 512 MB, 256 MB a worker
    assert env["DYNO_RAM"] == "512"

    server.cli("config:set", "WEB_CONCURRENCY=7", "-a", "hooks")
    wait_for(lambda: web_env(server, "hooks").get("WEB_CONCURRENCY") == "7", 60, "the app's own")
    server.cli("ps:type", "web=2X", "-a", "hooks")
    server.cli("config:unset", "WEB_CONCURRENCY", "-a", "hooks")
    wait_for(lambda: web_env(server, "hooks").get("WEB_CONCURRENCY") == "4", 60, "a 2X's")


DJANGO_SETTINGS = """
    from pathlib import Path
    BASE_DIR = Path(__file__).resolve().parent
    SECRET_KEY = "test"
    INSTALLED_APPS = ["django.contrib.staticfiles", "site_app"]
    STATIC_URL = "/static/"
    STATIC_ROOT = BASE_DIR / "staticfiles"
"""
MANAGE = """
    import os, sys
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
"""


def test_a_django_app_gets_collectstatic_unless_disabled_and_a_failure_says_how(
    server: RunningServer, tmp_path: Path
) -> None:
    server.create_app("django")
    app = envecho(
        tmp_path,
        **{
            "requirements.txt": "Django>=5.1,<6\n",
            "manage.py": MANAGE,
            "settings.py": DJANGO_SETTINGS,
            "site_app/__init__.py": "",
            "site_app/static/site.css": "body { color: green }\n",
        },
    )
    output, slug = released(server, "django", app)
    assert "-----> $ python manage.py collectstatic --noinput" in output
    assert "1 static file copied" in output
    assert (slug / "staticfiles" / "site.css").read_text() == "body { color: green }\n"

    server.cli("config:set", "DISABLE_COLLECTSTATIC=1", "-a", "django")
    output, slug = released(server, "django", app)
    assert "Skipping Django collectstatic since DISABLE_COLLECTSTATIC is set" in output
    assert not (slug / "staticfiles").exists()
    server.cli("config:unset", "DISABLE_COLLECTSTATIC", "-a", "django")

    settings = app / "settings.py"
    settings.write_text(settings.read_text().replace("STATIC_ROOT", "NOT_STATIC_ROOT"))
    output, last = deploy(server, "django", app)
    assert "ImproperlyConfigured" in output
    message = last["error"]["message"]  # type: ignore[index]
    assert "collectstatic --noinput" in message
    assert "dynos config:set DISABLE_COLLECTSTATIC=1" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="copies are made for the app's user as root")
def test_a_pyenv_python_is_copied_for_the_app_user_and_its_dynos_run_on_it(
    server: RunningServer, tmp_path: Path
) -> None:
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    versions = sorted(p.name for p in pyenv.glob("3.1[2-9].*")) if pyenv.is_dir() else []
    if not versions:
        pytest.skip("no pyenv Python 3.12 or newer on this machine")
    wanted = versions[-1]
    server.create_app("pyenv")
    app = envecho(tmp_path, **{"requirements.txt": SIX, ".python-version": wanted})
    output, slug = released(server, "pyenv", app)
    assert f"Python {wanted} from pyenv: {server.home}/pythons/pyenv-{wanted}-" in output
    wait_for(lambda: dyno_states(server, "pyenv") == {"web.1": "up"}, 60, "web.1 on it")
    with server.router("pyenv") as router:
        assert router.get("/").json()["prefix"] == str(slug / ".venv")
