"""The container backend's pure rules: names, limits, environments, the build script."""

from __future__ import annotations

import pytest

from dynos.core.containers import (
    COLLECTSTATIC_STATUS,
    CONTAINER_PATH,
    HOST_PYTHON,
    SLUG_PYTHON,
    addon_urls,
    build_script,
    check_image_name,
    container_environment,
    container_name,
    debootstrap_argv,
    release_image,
    release_labels,
    server_id,
    size_limits,
    stack_pythons,
    versioned_image,
)
from dynos.core.sizes import find_size


def test_the_stack_is_minbase_bookworm_with_what_builds_need() -> None:
    argv = debootstrap_argv("/tmp/rootfs")
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    assert argv[-3:] == ["bookworm", "/tmp/rootfs", "http://deb.debian.org/debian"]
    included = argv[2].removeprefix("--include=").split(",")
    assert {"python3", "python3-venv", "python3-dev", "gcc", "git", "ca-certificates"} <= set(
        included
    )


@pytest.mark.parametrize("name", ["dynos/stack:bookworm", "stack", "registry.local/a/b:v1.2"])
def test_image_names_the_engine_takes_pass(name: str) -> None:
    assert check_image_name(name) == name


@pytest.mark.parametrize("name", ["", "Dynos/Stack", "a:b:c", "a b", "../x", "x:-tag"])
def test_other_image_names_are_refused_saying_what_one_looks_like(name: str) -> None:
    with pytest.raises(ValueError, match="dynos/stack:bookworm"):
        check_image_name(name)


def test_each_release_has_an_image_named_by_version_and_labelled_with_its_slug() -> None:
    assert versioned_image("MyApp", 12) == "dynos/myapp:v12"
    assert release_labels("app-id", 12, "slug-id") == {
        "io.dynos.app-id": "app-id",
        "io.dynos.release": "12",
        "io.dynos.slug": "slug-id",
    }


def test_a_release_image_is_named_by_app_and_slug() -> None:
    assert release_image("My-App", "AB12") == "dynos/my-app:slug-ab12"


def test_container_names_differ_by_server_boot_and_start() -> None:
    server = server_id("/var/lib/dynos")
    assert server == server_id("/var/lib/dynos") != server_id("/srv/dynos")
    first = container_name(server, "b1", "app-id/web.1/1")
    assert first == f"dynos-{server[:8]}-b1-app-id-web.1-1"
    assert first != container_name(server, "b2", "app-id/web.1/1")


def test_sizes_become_memory_cpu_and_pids_limits() -> None:
    one_x, perf_m = size_limits(find_size("1X")), size_limits(find_size("Performance-M"))
    assert one_x.mem_limit == one_x.memswap_limit == 1024 * 1024 * 1024  # twice 512 MB
    assert (one_x.cpu_shares, one_x.cpu_quota, one_x.cpu_period) == (1024, 100_000, 100_000)
    assert one_x.pids_limit == 256
    assert perf_m.cpu_shares == 4 * 1024 and perf_m.cpu_quota == 4 * perf_m.cpu_period
    assert perf_m.mem_limit == 2 * 2560 * 1024 * 1024 and perf_m.pids_limit == 16384


def test_the_container_environment_points_at_app_not_the_host_slug() -> None:
    env = {"PATH": "/home/slugs/x/.venv/bin:/usr/bin", "HOME": "/home/slugs/x", "DYNO": "web.1"}
    assert container_environment({**env, "SECRET": "1"}, "/home/slugs/x") == {
        "PATH": CONTAINER_PATH,
        "HOME": "/app",
        "DYNO": "web.1",
        "SECRET": "1",
    }
    # A HOME the app set itself is the app's.
    assert container_environment({"HOME": "/data"}, "/home/slugs/x")["HOME"] == "/data"


def test_add_on_urls_name_the_add_on_host_in_a_container() -> None:
    env = {
        "REDIS_URL": "redis://:ab12@127.0.0.1:6400",
        "DATABASE_URL": "postgres://db_x:pw@127.0.0.1:5433/db_x",
        "HEROKU_POSTGRESQL_RED_URL": "postgresql://u:p@127.0.0.1:5434/u?sslmode=require",
        # The app's own: another scheme, another host, a look-alike host, not a URL.
        "API": "http://127.0.0.1:8000",
        "CACHE": "redis://cache.example:6379",
        "ODD": "redis://127.0.0.10:6379",
        "NOTE": "see redis://:x@127.0.0.1:1",
    }
    assert addon_urls(env, "172.18.0.1") == {
        "REDIS_URL": "redis://:ab12@172.18.0.1:6400",
        "DATABASE_URL": "postgres://db_x:pw@172.18.0.1:5433/db_x",
        "HEROKU_POSTGRESQL_RED_URL": "postgresql://u:p@172.18.0.1:5434/u?sslmode=require",
    }
    seen = container_environment(env, "/slug", "172.18.0.1")
    assert seen["REDIS_URL"] == "redis://:ab12@172.18.0.1:6400" and seen["API"] == env["API"]
    # Without an add-on host (the swarm backend's tasks) nothing is rewritten.
    assert container_environment(env, "/slug")["REDIS_URL"] == env["REDIS_URL"]


def test_the_build_script_runs_the_local_builds_uv_commands_hooks_and_collectstatic() -> None:
    install = [("/usr/local/bin/uv", "venv", "-p", "/usr/bin/python3.11", "/app/.venv")]
    install.append(("/usr/local/bin/uv", "pip", "install", "-r", "requirements.txt"))
    script = build_script(install, "requirements.txt (pip)", collectstatic=True)
    lines = script.splitlines()
    assert lines[0] == "set -eo pipefail"
    assert "say 'Installing dependencies with uv from requirements.txt (pip)'" in lines
    assert "/usr/local/bin/uv venv -p /usr/bin/python3.11 /app/.venv 2>&1 | indent" in lines
    # In the local build's order: pre-compile, install, collectstatic, post-compile.
    order = ["hook pre_compile", "uv venv", "uv pip install", "collectstatic", "hook post_"]
    at = [next(i for i, line in enumerate(lines) if step in line) for step in order]
    assert at == sorted(at)
    assert f"|| exit {COLLECTSTATIC_STATUS}" in script
    skipped = build_script(install, "requirements.txt (pip)", collectstatic=None)
    assert "Skipping Django collectstatic since DISABLE_COLLECTSTATIC is set" in skipped
    assert "manage.py collectstatic" not in skipped
    # An argument with a shell's metacharacters stays one word.
    odd = build_script([("uv", "pip", "sync", "/build/x; rm -rf /")], "x", collectstatic=True)
    assert "uv pip sync '/build/x; rm -rf /' 2>&1 | indent" in odd


def test_the_stack_images_pythons_are_read() -> None:
    output = "3 11 2 /usr/bin/python3.11\n3 12 7 /usr/local/bin/python3.12\ngarbage\n"
    assert stack_pythons(output) == [
        ((3, 11, 2), "/usr/bin/python3.11"),
        ((3, 12, 7), "/usr/local/bin/python3.12"),
    ]


def test_a_servers_interpreter_is_copied_into_the_slug_before_anything_of_the_apps_runs() -> None:
    install = [("/usr/local/bin/uv", "venv", "-p", f"{SLUG_PYTHON}/bin/python3.13", "/app/.venv")]
    lines = build_script(install, "requirements.txt (pip)", True, host_python=True).splitlines()
    copy = lines.index(f"cp -a {HOST_PYTHON} {SLUG_PYTHON}")
    # What the upload had there goes first; a link named .heroku is removed, not followed.
    removal = lines[copy - 3]
    assert removal.startswith("if [ -L /app/.heroku ]") and "rm -f /app/.heroku" in removal
    assert lines[copy - 2 : copy] == [f"rm -rf {SLUG_PYTHON}", "mkdir -p /app/.heroku"]
    assert copy < lines.index("hook pre_compile")
    without = build_script(install, "requirements.txt (pip)", True)
    assert HOST_PYTHON not in without and "rm -rf /app/.heroku" not in without
