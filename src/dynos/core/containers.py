"""The container backend's rules: the stack image, a release's image, a dyno's container.

Pure: names, labels, limits and environments in, nothing run. The shells are
``backends/stack.py`` (debootstrap, ``docker import``), ``backends/docker.py`` (dynos as
containers) and ``platform/container_build.py`` (builds in the stack image).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dynos.core.sizes import DynoSize

DEFAULT_STACK_IMAGE = "dynos/stack:bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a build needs on top of minbase: an interpreter that makes virtualenvs, a compiler and
# headers for packages without wheels, git for requirements from repositories, CAs for HTTPS.
STACK_PACKAGES = ("python3", "python3-venv", "python3-dev", "gcc", "git", "ca-certificates")
APP_DIR = "/app"  # where a release lives in its image, as on Heroku
DYNO_UID = 1000  # dynos run as this unprivileged user in their container, never as root
CONTAINER_PATH = "/app/.venv/bin:/usr/local/bin:/usr/bin:/bin"
CPU_PERIOD = 100_000  # microseconds: the CFS period a size's CPU quota is a part of
LABEL = "io.dynos"  # every label the platform sets begins so
NETWORK = "dynos"  # the dynos' own bridge: no dyno reaches another's container directly
BRIDGE_PREFIX = "dynos"  # of a swarm server's own bridge's interface (engine.bridge_interface)
SERVER_BRIDGES = f"{BRIDGE_PREFIX}*"  # all of them, as nftables matches a name by its prefix


def debootstrap_argv(target: str, mirror: str = MIRROR) -> list[str]:
    """debootstrap's command line for the stack's root filesystem in ``target``."""
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(STACK_PACKAGES)}",
        SUITE,
        target,
        mirror,
    ]


def import_changes() -> list[str]:
    """The Dockerfile instructions ``docker import`` applies to the stack's rootfs."""
    return [f"ENV PATH={CONTAINER_PATH}", "ENV LANG=C.UTF-8", f"WORKDIR {APP_DIR}"]


_IMAGE_REFERENCE = re.compile(r"[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?")


def check_image_name(name: str) -> str:
    """``name`` if it is an image reference the engine takes (``repo[:tag]``); else ValueError
    saying what one looks like."""
    if not _IMAGE_REFERENCE.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an image name: use lowercase letters, digits and . _ - /, "
            "and an optional :tag (such as dynos/stack:bookworm)."
        )
    return name


def release_image(app_name: str, slug_id: str) -> str:
    """A slug's image: the stack with the slug at /app. One per slug, so that every release
    made from it (config changes, rollbacks) shares its layers."""
    return f"dynos/{app_name}:slug-{slug_id}".lower()


def versioned_image(app_name: str, version: int) -> str:
    """The image of release ``version``: its slug's image, labelled with the release."""
    return f"dynos/{app_name}:v{version}".lower()


def release_labels(app_id: str, version: int, slug_id: str) -> dict[str, str]:
    """What a release image says of itself: whose, which release, made of which slug."""
    return {
        f"{LABEL}.app-id": app_id,
        f"{LABEL}.release": str(version),
        f"{LABEL}.slug": slug_id,
    }


def server_id(home: str) -> str:
    """What labels a server's containers, so a restarted server finds and removes its own
    (and no other server's on the same engine)."""
    return hashlib.sha256(home.encode()).hexdigest()[:16]


def dyno_labels(server: str, app_id: str, app_name: str, name: str, key: str) -> dict[str, str]:
    return {
        f"{LABEL}.server": server,
        f"{LABEL}.app-id": app_id,
        f"{LABEL}.app": app_name,
        f"{LABEL}.dyno": name,
        f"{LABEL}.key": key,
    }


def container_name(server: str, boot: str, key: str) -> str:
    """A container name for the dyno ``key`` ("<app id>/<name>/<n>", whose count starts
    again with each server): unique per start of a server (``boot``) and of a dyno."""
    return f"dynos-{server[:8]}-{boot}-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", key)


@dataclass(frozen=True)
class ContainerLimits:
    """A size as the engine's limits (the SDK's argument names)."""

    mem_limit: int
    memswap_limit: int
    cpu_shares: int
    cpu_period: int
    cpu_quota: int
    pids_limit: int


def size_limits(size: DynoSize) -> ContainerLimits:
    """Memory at the size's hard limit (twice its quota, where R15 happens) and no swap
    beyond it; CPU by share, both as a weight against other dynos and as a quota of that many
    cores' worth at most; the size's process limit."""
    memory = size.memory_limit_bytes
    return ContainerLimits(
        mem_limit=memory,
        memswap_limit=memory,
        cpu_shares=1024 * size.cpu_share,
        cpu_period=CPU_PERIOD,
        cpu_quota=CPU_PERIOD * size.cpu_share,
        pids_limit=size.max_processes,
    )


def container_environment(
    env: Mapping[str, str], slug: str, addon_host: str | None = None
) -> dict[str, str]:
    """The manager's environment for a dyno (host paths of its slug) as the container sees
    it: HOME is /app, PATH the release's virtualenv then the stack's. The app's config vars
    pass unchanged, but for its add-ons' URLs with ``addon_host``: the server's loopback,
    which they name, is the container's own inside it (``addon_urls``)."""
    out = dict(env)
    out["PATH"] = CONTAINER_PATH
    if out.get("HOME") == slug:
        out["HOME"] = APP_DIR
    if addon_host is not None:
        out.update(addon_urls(out, addon_host))
    return out


# The schemes of the add-on URLs the platform sets (REDIS_URL, DATABASE_URL and
# HEROKU_POSTGRESQL_<COLOR>_URL): only these are pointed at the add-on host, so that an app's
# own URL of a service on its container's loopback keeps meaning that.
ADDON_SCHEMES = ("redis", "rediss", "postgres", "postgresql")
_LOOPBACK_URL = re.compile(
    r"(?P<head>(?:" + "|".join(ADDON_SCHEMES) + r")://(?:[^@/\s]*@)?)127\.0\.0\.1(?P<tail>:\d+)"
)


def addon_urls(env: Mapping[str, str], addon_host: str) -> dict[str, str]:
    """The config vars that name an add-on server at ``127.0.0.1`` (the form ``config:get``
    shows, as on the server's machine), rewritten to ``addon_host``: the address where a
    container reaches the add-on servers (the ``dynos`` bridge's gateway). Host, port,
    credentials and the rest stay as they are."""
    changed = {}
    for name, value in env.items():
        match = _LOOPBACK_URL.match(value)
        if match is not None:
            changed[name] = f"{match['head']}{addon_host}{match['tail']}{value[match.end() :]}"
    return changed


STACK_UV = "/usr/local/bin/uv"  # the server's own uv, mounted read-only into a build
BUILD_INPUT = "/build"  # the build's own files (a lock's pins), mounted read-only
COLLECTSTATIC_STATUS = 86  # a container build's exit status when collectstatic failed
# A server's interpreter a build uses: its install tree mounted read-only at HOST_PYTHON, and
# copied into the slug where Heroku's buildpack puts its own Python, so that the release's
# image has it (the virtualenv links to it there).
HOST_PYTHON = "/opt/dynos/python"
SLUG_PYTHON = f"{APP_DIR}/.heroku/python"
# Lists each python3.X of the stack image with its version: the interpreters a build may use.
STACK_PYTHONS_SCRIPT = (
    "for p in /usr/local/bin/python3.[0-9] /usr/local/bin/python3.[0-9][0-9] "
    '/usr/bin/python3.[0-9] /usr/bin/python3.[0-9][0-9]; do [ -x "$p" ] && '
    '"$p" -c \'import sys; print(*sys.version_info[:3], sys.argv[1])\' "$p"; done; true'
)


def stack_pythons(output: str) -> list[tuple[tuple[int, int, int], str]]:
    """The versions and paths ``STACK_PYTHONS_SCRIPT`` printed, one a line."""
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and all(part.isdigit() for part in parts[:3]):
            major, minor, micro = (int(part) for part in parts[:3])
            found.append(((major, minor, micro), parts[3]))
    return found


def copy_python() -> list[str]:
    """The build's steps that copy the mounted interpreter (``HOST_PYTHON``) to
    ``SLUG_PYTHON``, in place of whatever the upload had there: a link (or a file) named
    ``.heroku`` is removed first, so that the copy lands in the slug and nowhere it points."""
    heroku = shlex.quote(SLUG_PYTHON.rsplit("/", 1)[0])
    python = shlex.quote(SLUG_PYTHON)
    return [
        f"if [ -L {heroku} ] || {{ [ -e {heroku} ] && [ ! -d {heroku} ]; }}; then "
        f"rm -f {heroku}; fi",
        f"rm -rf {python}",
        f"mkdir -p {heroku}",
        f"cp -a {shlex.quote(HOST_PYTHON)} {python}",
    ]


def build_script(
    install: Sequence[Sequence[str]],
    manager: str,
    collectstatic: bool | None,
    *,
    host_python: bool = False,
) -> str:
    """The bash script a container build runs in /app (the slug), in the order of the local
    build (platform/build.py) and with its output: the server's interpreter copied into the
    slug (``host_python``: one is mounted, :func:`copy_python`), the hooks, ``install`` (the
    uv commands the local build would run, with the container's paths; ``manager``: what the
    line says they install from), Django's collectstatic (``None``: skipped by
    DISABLE_COLLECTSTATIC). Every step's failure fails the build; collectstatic's with
    ``COLLECTSTATIC_STATUS``."""
    steps = [
        "set -eo pipefail",  # run by bash: a failing step fails the build despite its | indent
        'say() { echo "-----> $*"; }',
        'indent() { sed -u "s/^/       /"; }',
        *(copy_python() if host_python else []),
        "hook() { if [ -f bin/$1 ] && [ ! -L bin/$1 ]; then say Running ${1%_compile}-compile "
        'hook; chmod u+x bin/$1; "./bin/$1" 2>&1 | indent; fi; }',
        "hook pre_compile",
        f"say {shlex.quote(f'Installing dependencies with uv from {manager}')}",
        *(f"{shlex.join(command)} 2>&1 | indent" for command in install),
    ]
    django = (
        "[ -f manage.py ] && ls /app/.venv/lib/python3.*/site-packages/django/__init__.py "
        ">/dev/null 2>&1"
    )
    if collectstatic is None:
        steps.append(
            f"if {django}; then say Skipping Django collectstatic since "
            "DISABLE_COLLECTSTATIC is set; fi"
        )
    elif collectstatic:
        steps.append(
            f"if {django}; then say '$ python manage.py collectstatic --noinput'; "
            "python manage.py collectstatic --noinput 2>&1 | indent "
            f"|| exit {COLLECTSTATIC_STATUS}; fi"
        )
    steps.append("hook post_compile")
    return "\n".join(steps)
