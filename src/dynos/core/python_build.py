"""The rules of a Python build, as Heroku's Python buildpack documents them: pure, no I/O.

Which package manager an app uses (one of its files, in Heroku's order; several at once is
an error, as Heroku made it in 2025), which Python it asks for and why (``runtime.txt``,
then ``.python-version``, then ``Pipfile.lock``; without any, the newest the host has), which
of the host's interpreters serves that request, the build cache's key, the pinned
requirements uv installs for a ``poetry.lock`` or ``Pipfile.lock``, and ``WEB_CONCURRENCY``
by dyno size. The build itself (:mod:`dynos.platform.python_build`) reads the files and runs
the steps; everything it decides comes from here.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dynos.errors import BuildFailed

Version = tuple[int, ...]  # (3, 13) asks for the newest 3.13.x; (3, 13, 1) for exactly that


@dataclass(frozen=True)
class PackageManager:
    name: str  # as the build output names it
    file: str  # the file at the app's top that selects it


PIPENV = PackageManager("Pipenv", "Pipfile.lock")
PIP = PackageManager("pip", "requirements.txt")
POETRY = PackageManager("Poetry", "poetry.lock")
UV = PackageManager("uv", "uv.lock")
PACKAGE_MANAGERS = (PIPENV, PIP, POETRY, UV)  # Heroku's order of detection


def detect_package_manager(files: Iterable[str]) -> PackageManager:
    """The one package manager whose file is among ``files`` (names at the app's top)."""
    present = set(files)
    found = [manager for manager in PACKAGE_MANAGERS if manager.file in present]
    if len(found) == 1:
        return found[0]
    if not found:
        hint = (
            " (a Pipfile without its Pipfile.lock: run 'pipenv lock')"
            if "Pipfile" in present
            else ""
        )
        raise BuildFailed(
            f"No Python package manager file at the top of the app directory{hint}: add a "
            "requirements.txt, uv.lock, poetry.lock or Pipfile.lock (an empty requirements.txt "
            "for an app without dependencies)."
        )
    listed = ", ".join(f"{m.file} ({m.name})" for m in found)
    raise BuildFailed(
        f"Multiple Python package manager files were found: {listed}. Exactly one must be "
        "present, as on Heroku: decide which package manager the app uses and delete the "
        "others' files."
    )


# -- the Python version --------------------------------------------------------------------

_VERSION = r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?"


@dataclass(frozen=True)
class PythonRequest:
    version: Version | None  # None: the app asked for none
    origin: str  # the file it came from, or "default"

    def describe(self) -> str:
        return "any" if self.version is None else format_version(self.version)


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


def _version(text: str) -> Version | None:
    match = re.fullmatch(_VERSION, text.strip())
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def parse_runtime_txt(text: str) -> Version:
    version = (
        _version(text.strip().removeprefix("python-"))
        if text.strip().startswith("python-")
        else None
    )
    if version is None:
        raise BuildFailed(
            f"Invalid Python version in runtime.txt: {text.strip()[:80]!r}. Write "
            "'python-3.13' (the newest 3.13) or 'python-3.13.1' (exactly that), or better, "
            "replace runtime.txt with a .python-version file holding '3.13'."
        )
    return version


def parse_python_version_file(text: str) -> Version:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) != 1:
        what = "no Python version" if not lines else f"{len(lines)} versions"
        raise BuildFailed(
            f"Invalid .python-version: it holds {what}. Write one line such as '3.13' (the "
            "newest 3.13) or '3.13.1' (exactly that); comments go on lines starting with '#'."
        )
    version = _version(lines[0])
    if version is None:
        raise BuildFailed(
            f"Invalid Python version in .python-version: {lines[0][:80]!r}. Write '3.13' or "
            "'3.13.1', without quotes or a 'python-' prefix."
        )
    return version


def pipfile_lock_version(text: str) -> Version | None:
    """``_meta.requires.python_full_version``, else ``python_version``; None when neither."""
    meta = _load_json(text, PIPENV.file).get("_meta")
    requires = meta.get("requires") if isinstance(meta, dict) else None
    if not isinstance(requires, dict):
        return None
    raw = requires.get("python_full_version") or requires.get("python_version")
    if raw is None:
        return None
    version = _version(str(raw))
    if version is None:
        raise BuildFailed(
            f"Invalid Python version in Pipfile.lock: {str(raw)[:80]!r}. Set python_version "
            "in the Pipfile to '3.13' (say) and run 'pipenv lock'."
        )
    return version


def requested_python(files: Mapping[str, str], manager: PackageManager) -> PythonRequest:
    """What the app asks for, in Heroku's order of precedence. ``files``: the contents of
    the app's ``runtime.txt``, ``.python-version`` and ``Pipfile.lock``, those it has."""
    if "runtime.txt" in files:
        return PythonRequest(parse_runtime_txt(files["runtime.txt"]), "runtime.txt")
    if ".python-version" in files:
        return PythonRequest(parse_python_version_file(files[".python-version"]), ".python-version")
    if manager == PIPENV and PIPENV.file in files:
        version = pipfile_lock_version(files[PIPENV.file])
        if version is not None:
            return PythonRequest(version, PIPENV.file)
    return PythonRequest(None, "default")


MINIMUM = (3, 8)  # the oldest Python uv makes virtualenvs for


@dataclass(frozen=True)
class Interpreter:
    version: Version  # (3, 13, 1)
    path: str
    source: str  # where it was found: "PATH", "pyenv", "uv"

    def matches(self, wanted: Version | None) -> bool:
        return wanted is None or self.version[: len(wanted)] == wanted


def choose_interpreter(request: PythonRequest, found: Iterable[Interpreter]) -> Interpreter | None:
    """The newest of ``found`` that serves ``request``; None when none does."""
    fitting = [i for i in found if i.matches(request.version) and i.version >= MINIMUM]
    return max(fitting, key=lambda i: i.version, default=None)


def no_interpreter(request: PythonRequest, found: Iterable[Interpreter], download: str) -> str:
    """The one line a build fails with when no interpreter serves ``request``: what was asked
    for, what the host has, how to fix it. ``download``: why uv could not fetch one."""
    usable = {i.version for i in found if i.version >= MINIMUM}
    have = [format_version(version) for version in sorted(usable)]
    listed = ", ".join(have) if have else "none"
    return (
        f"Python {request.describe()} was requested (in {request.origin}), but this server has "
        f"Python {listed}, and {download}. Ask for one of those in {request.origin}, or "
        f"install Python {request.describe()} on the server (with pyenv, or as python3.X on "
        f"its PATH), where every build finds it."
    )


# -- the build cache -------------------------------------------------------------------------


def cache_key(
    interpreter: Interpreter, manager: PackageManager, dependencies: bytes, platform: str
) -> dict[str, str]:
    """What a cached environment was built from: a rebuild whose key is the same installs
    nothing; any other is built anew (uv's download cache still serves it). The interpreter's
    path is in it, as its version is (the environment runs it), and the host's ``platform``
    (its system and machine: the wheels installed are built for them)."""
    return {
        "python": format_version(interpreter.version),
        "interpreter": interpreter.path,
        "platform": platform,
        "package_manager": manager.name,
        "dependencies": hashlib.sha256(dependencies).hexdigest(),
    }


def cache_changes(cached: Mapping[str, str] | None, key: Mapping[str, str]) -> list[str]:
    """Why the cache cannot serve ``key``, as the output says it: empty when it can."""
    if cached is None:
        return []
    if set(cached) != set(key):
        return ["The cache was made by another version of dynos"]
    reasons = []
    if cached["python"] != key["python"]:
        reasons.append(f"The Python version changed from {cached['python']} to {key['python']}")
    elif cached["interpreter"] != key["interpreter"]:
        reasons.append(
            f"The Python interpreter moved from {cached['interpreter']} to {key['interpreter']}"
        )
    if cached["platform"] != key["platform"]:
        reasons.append(f"The platform changed from {cached['platform']} to {key['platform']}")
    if cached["package_manager"] != key["package_manager"]:
        reasons.append(
            f"The package manager changed from {cached['package_manager']} to "
            f"{key['package_manager']}"
        )
    elif cached["dependencies"] != key["dependencies"]:
        reasons.append(f"The contents of {_file_of(key['package_manager'])} changed")
    return reasons


# Options of a requirements file that name no file: what they change is in the file's text.
_TEXT_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "--trusted-host",
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
)
_NAMED = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:\[[A-Za-z0-9._,\s-]*\])?")
_ARCHIVE = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def self_contained(requirements: str) -> bool:
    """Whether a requirements.txt says all it installs in its own text: only requirements
    by name (with versions, extras, markers, hashes, or a remote ``@ https://`` URL) and
    options that name no file. Not one that includes or constrains by another file (``-r``,
    ``-c``), installs a path or a local archive (``-e .``, ``./pkg``, ``file:``), or reads
    an environment variable (``${VAR}``, from config vars): what those install can change
    while the text stays the same, so a build must ask uv again."""
    text = re.sub(r"\\\n", " ", requirements)
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if not line:
            continue
        if "$" in line or "file:" in line:
            return False
        if line.startswith("-"):
            option = re.split(r"[\s=]", line, maxsplit=1)[0]
            if option not in _TEXT_OPTIONS:
                return False
            continue
        named = _NAMED.match(line)
        if named is None:
            return False
        name = named.group().split("[")[0].strip()
        if name.endswith(_ARCHIVE):
            return False
        rest = line[named.end() :].lstrip()
        if rest.startswith("@") and not rest[1:].lstrip().startswith(("https://", "http://")):
            return False
        if rest and not rest.startswith(("@", "=", "<", ">", "~", "!", ";", "--", "(")):
            return False
    return True


def reuse_environment(
    key_matches: bool,
    sealed: bool,
    hooks: bool,
    manager: PackageManager,
    dependencies: str,
) -> bool:
    """Whether a build takes the cached environment as it is, read-only, and runs no uv:
    its key is the same (``key_matches``), the build that made it ``sealed`` it right after
    uv's install (so only uv wrote it, from the same dependencies), this build has no hook
    (``bin/pre_compile`` could change the dependencies; both may write the environment), and
    uv would have nothing to decide: a pip requirements file that is :func:`self_contained`,
    or the pins of a Poetry or Pipenv lock; never a uv project, whose own code ``uv sync``
    installs anew each build."""
    if not (key_matches and sealed) or hooks or manager == UV:
        return False
    return manager != PIP or self_contained(dependencies)


def _file_of(name: str) -> str:
    return next((m.file for m in PACKAGE_MANAGERS if m.name == name), name)


# -- lock files as pinned requirements ------------------------------------------------------


def _load_json(text: str, name: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BuildFailed(f"{name} is not valid JSON ({exc}): run 'pipenv lock'.") from None
    if not isinstance(data, dict):
        raise BuildFailed(f"{name} is not a Pipfile.lock: run 'pipenv lock'.")
    return data


def _pin(name: str, version: str, marker: str | None) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or not re.fullmatch(
        r"[A-Za-z0-9.!+_*-]+", version
    ):
        raise BuildFailed(f"The lock file pins {name!r} at {version!r}, which uv cannot read.")
    line = f"{name}=={version}"
    if marker:
        line += f" ; {marker}"
    return line


def pipfile_lock_requirements(text: str) -> list[str]:
    """The ``default`` packages of a Pipfile.lock (not ``develop``), pinned."""
    default = _load_json(text, PIPENV.file).get("default", {})
    if not isinstance(default, dict):
        raise BuildFailed("Pipfile.lock has no 'default' packages: run 'pipenv lock'.")
    lines = []
    for name, entry in sorted(default.items()):
        if not isinstance(entry, dict) or not str(entry.get("version", "")).startswith("=="):
            raise BuildFailed(
                f"Pipfile.lock lists {name} without a pinned version (a path or VCS "
                "dependency): pin it to a released version and run 'pipenv lock'."
            )
        lines.append(_pin(name, str(entry["version"])[2:], entry.get("markers")))
    return lines


def poetry_lock_requirements(text: str) -> list[str]:
    """The main group's packages of a poetry.lock (Poetry 1 and 2 formats), pinned."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BuildFailed(f"poetry.lock is not valid TOML ({exc}): run 'poetry lock'.") from None
    lines = []
    for package in data.get("package", []):
        groups = package.get("groups") or [package.get("category", "main")]
        if "main" not in groups or package.get("optional", False):
            continue
        if package.get("source", {}).get("type") not in (None, "legacy"):
            raise BuildFailed(
                f"poetry.lock installs {package.get('name')} from a "
                f"{package['source']['type']}: pin it to a released version and run "
                "'poetry lock'."
            )
        marker = package.get("markers")
        if isinstance(marker, dict):
            marker = marker.get("main")
        lines.append(_pin(str(package.get("name")), str(package.get("version")), marker))
    return sorted(lines)


# -- at dyno start -----------------------------------------------------------------------------

MEMORY_PER_WORKER_MB = 256


def web_concurrency(memory_mb: int, cpu_cores: int) -> int:
    """Heroku's Python default: as many workers as 256 MB each fit in the dyno's memory, at
    most two per CPU core plus one, at least one (2 on a Standard-1X, 4 on a 2X)."""
    by_memory = max(1, memory_mb // MEMORY_PER_WORKER_MB)
    return min(by_memory, cpu_cores * 2 + 1)
