"""What a Python build costs: a Django + gunicorn + psycopg app deployed three ways, against
``pip install -r requirements.txt`` into a fresh virtualenv in the same run.

    python bench/build.py [--rounds 3]

Each round starts a dynos server on a fresh home (an empty build cache, an empty uv cache)
and deploys the app: a first build, a rebuild with the same requirements.txt, and a rebuild
with one dependency changed (gunicorn's pin). Each is timed as a client sees it: the upload,
the build (Python, uv, collectstatic of Django's admin files), the release. The anchor, in
the same round, is ``python -m venv`` and ``pip install -r requirements.txt`` with the same
interpreter, from PyPI like uv: once with ``--no-cache-dir``, once with a warm pip cache
(filled by a first install the round does not time). pip runs without the machine's own pip
configuration (a local wheel directory here) so that both download from the same index.
The build cache's copy of the environment is made in the background once a release is out;
the round waits for it between deploys (as the time between a developer's deploys does) and
prints how long it took. Prints each round and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from dynos.testing.harness import RunningServer, start_server, tarball

REQUIREMENTS = {
    "Django": "5.2.19",
    "gunicorn": "23.0.0",
    "psycopg[binary]": "3.3.9",
    "whitenoise": "6.12.0",
}
CHANGED = ("gunicorn", "22.0.0")  # the one dependency a later deploy changes

SETTINGS = """
    from pathlib import Path
    BASE_DIR = Path(__file__).resolve().parent.parent
    SECRET_KEY = "bench"
    DEBUG = False
    ALLOWED_HOSTS = ["*"]
    INSTALLED_APPS = [
        "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
        "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    ]
    MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware"]
    ROOT_URLCONF = "site_app.urls"
    WSGI_APPLICATION = "site_app.wsgi.application"
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "bench"}}
    STATIC_URL = "/static/"
    STATIC_ROOT = BASE_DIR / "staticfiles"
    TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
                  "APP_DIRS": True, "OPTIONS": {"context_processors": []}}]
"""
FILES = {
    "Procfile": "web: gunicorn site_app.wsgi\n",
    "manage.py": """
        import os, sys
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_app.settings")
        from django.core.management import execute_from_command_line
        execute_from_command_line(sys.argv)
    """,
    "site_app/__init__.py": "",
    "site_app/settings.py": SETTINGS,
    "site_app/urls.py": """
        from django.contrib import admin
        from django.urls import path
        urlpatterns = [path("admin/", admin.site.urls)]
    """,
    "site_app/wsgi.py": """
        import os
        from django.core.wsgi import get_wsgi_application
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_app.settings")
        application = get_wsgi_application()
    """,
}


def write_app(root: Path, requirements: dict[str, str], python_version: str) -> Path:
    """The app, asking for exactly the anchor's Python (a newer patch release under pyenv
    would otherwise be chosen and copied for the app's user: a one-time cost per server)."""
    app = root / "app"
    app.mkdir(parents=True)
    (app / ".python-version").write_text(python_version + "\n")
    for name, text in FILES.items():
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    pins = "".join(f"{name}=={version}\n" for name, version in requirements.items())
    (app / "requirements.txt").write_text(pins)
    return app


def timed_deploy(server: RunningServer, app: Path) -> tuple[float, str]:
    started = time.perf_counter()
    with server.api() as api:
        response = api.post(
            "/apps/bench/deploys",
            content=tarball(app),
            headers={"Content-Type": "application/gzip"},
            timeout=900,
        )
    elapsed = time.perf_counter() - started
    lines = [json.loads(line) for line in response.text.splitlines()]
    output = "\n".join(line.get("output", "") for line in lines)
    if "release" not in lines[-1]:
        raise SystemExit(f"the deploy failed:\n{output}\n{lines[-1]}")
    return elapsed, output


def wait_for_cache(server: RunningServer) -> float:
    """Seconds until the copy of the last build's environment is in the app's build cache
    (made in the background once the release is out): between a developer's deploys it has
    long finished; a deploy straight after would wait for it."""
    started = time.perf_counter()
    while not list((server.home / "build-cache").glob("*/key.json")):
        if time.perf_counter() - started > 300:
            raise SystemExit("the build cache was never saved")
        time.sleep(0.05)
    return time.perf_counter() - started


def pip_install(python: str, requirements: Path, where: Path, cache: Path | None) -> float:
    """``python -m venv`` and ``pip install -r``, timed together, from PyPI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    shutil.rmtree(where, ignore_errors=True)
    cache_args = ["--no-cache-dir"] if cache is None else ["--cache-dir", str(cache)]
    started = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(where)], check=True, env=env)
    subprocess.run(
        [str(where / "bin" / "pip"), "install", "-q", *cache_args, "-r", str(requirements)],
        check=True,
        env=env,
    )
    return time.perf_counter() - started


def one_round(python: str, version: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dynos-bench-build-") as temp:
        root = Path(temp)
        os.chmod(root, 0o755)  # a root server's dynos must reach the home inside
        app = write_app(root, REQUIREMENTS, version)
        times: dict[str, float] = {}
        times["pip --no-cache-dir"] = pip_install(
            python, app / "requirements.txt", root / "a", None
        )
        pip_cache = root / "pip-cache"
        pip_install(python, app / "requirements.txt", root / "a", pip_cache)  # fills the cache
        times["pip, warm cache"] = pip_install(
            python, app / "requirements.txt", root / "a", pip_cache
        )
        server = start_server(root / "home", "--stop-grace", "2")
        try:
            with server.api() as api:
                api.post("/apps", json={"name": "bench"}).raise_for_status()
            times["first build"], first = timed_deploy(server, app)
            times["cache saved after first"] = wait_for_cache(server)
            times["rebuild, unchanged"], again = timed_deploy(server, app)
            times["cache saved after rebuild"] = wait_for_cache(server)
            if "Restoring cache" not in again or "Installed" in again:
                raise SystemExit(f"the unchanged rebuild installed something:\n{again}")
            changed = dict(REQUIREMENTS)
            changed[CHANGED[0]] = CHANGED[1]
            shutil.rmtree(app)
            app = write_app(root, changed, version)
            times["rebuild, one changed"], _ = timed_deploy(server, app)
        finally:
            server.stop()
        print("  " + "  ".join(f"{k}: {v:.2f} s" for k, v in times.items()), flush=True)
        if "collectstatic" not in first:
            raise SystemExit(f"no collectstatic in the first build:\n{first}")
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    python = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/bin")
    python = python or sys.executable
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"Python {version} ({python}); {args.rounds} rounds", flush=True)
    rounds = [one_round(python, version) for _ in range(args.rounds)]
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print("medians:")
    for key, value in medians.items():
        print(f"  {key:22} {value:6.2f} s")
    first = medians["first build"]
    print(f"first build / pip --no-cache-dir: {first / medians['pip --no-cache-dir']:.2f}x")
    print(f"first build / pip, warm cache:    {first / medians['pip, warm cache']:.2f}x")
    print(f"unchanged rebuild / first build:  {medians['rebuild, unchanged'] / first:.1%}")


if __name__ == "__main__":
    main()
