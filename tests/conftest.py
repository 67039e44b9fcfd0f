"""Suite-wide: how async tests run, and which tests are ``integration`` and ``slow``.

Async tests are plain ``async def test_...`` functions marked ``pytest.mark.anyio`` (anyio's
pytest plugin, installed with anyio): each gets a fresh asyncio event loop, as
``asyncio.run`` gave it, and async fixtures run on that same loop. The ``anyio_backend``
fixture below picks asyncio; a module that also wants uvloop overrides it::

    @pytest.fixture(params=["asyncio", ("asyncio", {"use_uvloop": True})])
    def anyio_backend(request): return request.param

The markers are given here, by directory, file or test, rather than in each module, so that
the whole map is in one place (``pytest -m "not slow"`` is the quick run; ``-m "not
integration"`` runs only what needs no real server, dyno process, Unix user or nftables).
A path below that no longer exists is an error, so the map cannot silently go stale.

The suite runs in two pytest-xdist workers (pyproject's addopts, ``--dist loadscope``): each
module runs whole on one worker, in order, so the tests that share its server stay together
(a package-scoped fixture is made once per worker that runs one of its modules). Every test
must hold its own against the other worker: ports bound at 0, its own homes, Unix users and
apps (a server tags its users with its home), no state in the machine that another reads.
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

import pytest

import dynos

# Every test here starts a `dynos server` (and dynos), the heroku CLI against one, or both.
INTEGRATION_DIRS = ("tests/integration", "tests/heroku")
# Elsewhere, the modules whose tests start a real server or real dyno processes, or change
# the machine (Unix users, nftables).
INTEGRATION_FILES = (
    "tests/api/test_contract.py",  # one `dynos server` for these three (tests/api/conftest.py)
    "tests/api/test_endpoints.py",
    "tests/api/test_input.py",
    "tests/router/test_router_reliability.py",  # a server and its dynos under load
    "tests/backends/test_attach.py",  # dyno processes through the local backend
    "tests/backends/test_dyno_signals.py",
    "tests/backends/test_app_users.py",  # real Unix users
    "tests/backends/test_firewall.py",  # real nftables tables
    "tests/backends/test_containment.py",  # dyno processes, cgroups and reapers
    "tests/backends/test_orphans.py",  # real processes left by a "killed" server
    "tests/backends/test_scratch.py",  # dyno processes in mount namespaces, real tmpfs
)

# Slow: a second or more per test, measured with `pytest --durations=0` on the 2-core
# development machine (tests/integration: 1 to 8 s each, a server per test; tests/heroku:
# about 1 s each, the heroku CLI's Node start-up; the reliability tests: 4 to 16 s each).
SLOW_DIRS = INTEGRATION_DIRS
SLOW_FILES = (
    "tests/router/test_router_reliability.py",
    # 1.3 to 3.8 s each: useradd and userdel, and a removed user's files looked for on every
    # filesystem (backends/mounts.py: files_owned_by).
    "tests/backends/test_app_users.py",
    # 1 to 5 s each: Debian's pebble started per test, and ACME orders that poll once a second.
    "tests/acm/test_acme_client.py",
    # 5 to 12 s: a couple of thousand hostile requests, in process, to every route.
    "tests/api/test_fuzz.py",
)
SLOW_TESTS = (
    "tests/backends/test_firewall.py::"
    "test_a_guarded_port_is_closed_to_other_hosts_even_on_every_address",  # 2.2 s
    # 1.0 to 1.1 s: the one-second grace it checks is waited out.
    "tests/backends/test_containment.py::"
    "test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period",
    # 1.2 and 2.0 s: killed grandchildren are gone once their new parent (PID 1) reaps them.
    "tests/backends/test_orphans.py::"
    "test_recorded_processes_still_running_are_killed_with_their_descendants",
    "tests/backends/test_orphans.py::test_what_stays_in_a_dead_leaders_session_is_killed",
    # 2 to 3 s: a router process started (Python's start-up and imports).
    "tests/router/test_router_challenges.py::"
    "test_every_router_process_answers_once_publish_returns",
    # 3 to 4 s: a real interpreter's tree copied (its stdlib) and run.
    "tests/platform/test_pythons.py::"
    "test_only_the_interpreters_own_files_are_copied_and_the_copy_runs",
    # 3 to 9 s: a real interpreter's tree copied two to four times.
    "tests/platform/test_pythons.py::"
    "test_a_copy_is_made_again_when_its_interpreter_changes_and_old_ones_stay",
    "tests/platform/test_pythons.py::test_a_self_contained_prefix_has_its_own_libraries_copied",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once, in the controller: before any worker
        compile_dynos_once()
    root = config.rootpath
    listed = [*INTEGRATION_DIRS, *INTEGRATION_FILES, *SLOW_FILES]
    missing = [path for path in listed if not (root / path).exists()]
    for test in SLOW_TESTS:
        path, name = test.split("::")
        if not (root / path).exists() or f"def {name}(" not in (root / path).read_text():
            missing.append(test)
    if missing:
        raise pytest.UsageError(
            f"tests/conftest.py marks tests that do not exist: {', '.join(missing)}. "
            "Update its lists."
        )


def compile_dynos_once() -> None:
    """Where PYTHONDONTWRITEBYTECODE is set, no Python process leaves its bytecode behind,
    so each `dynos server` the suite starts (hundreds) compiled dynos' 250 modules from
    source again, 0.4-0.5 s of CPU, and each `dynos` CLI call 0.1-0.15 s. Compiled once
    here into the package's __pycache__ (which git ignores), every process reads them:
    Python checks each file against its source's time and size, so a stale one is never
    used. Where bytecode is written anyway, the first process writes it as usual."""
    if sys.dont_write_bytecode:
        compileall.compile_dir(Path(dynos.__file__).parent, quiet=1)


def _under(path: str, places: tuple[str, ...]) -> bool:
    return any(path == place or path.startswith(f"{place}/") for place in places)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        path = Path(item.path).relative_to(root).as_posix()
        name = item.originalname if isinstance(item, pytest.Function) else item.name
        if _under(path, INTEGRATION_DIRS) or path in INTEGRATION_FILES:
            item.add_marker(pytest.mark.integration)
        if _under(path, SLOW_DIRS) or path in SLOW_FILES or f"{path}::{name}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    # Modules of real servers first: pytest-xdist hands whole modules out in this order to
    # whichever worker is free, and the long ones done early leave short ones to even out
    # the two workers' ends. A module's tests keep their order.
    items.sort(key=lambda item: not item.get_closest_marker("integration"))
