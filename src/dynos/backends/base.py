"""The seam between the manager and whatever runs dynos (local processes, a cluster engine).

A backend starts a dyno from a :class:`DynoSpec`, stops it with a grace period, and reports
what happens to it through :class:`DynoEvents`. It decides nothing: restarts, scaling and
state belong to the manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dynos.core.sizes import DynoSize

if TYPE_CHECKING:
    from dynos.backends.attach import Terminal


@dataclass(frozen=True)
class DynoSpec:
    key: str  # unique per started dyno, never reused: "<app id>/<name>/<n>"
    app_name: str
    name: str  # "web.1"
    command: str
    cwd: Path
    env: dict[str, str]
    port: int | None  # web dynos only: the port the process must bind
    size: DynoSize
    app_id: str = ""  # whose dynos share a user and may read this release, when isolated
    health_path: str | None = None  # web: up only once GET of this path answers 2xx/3xx
    terminal: Terminal | None = None  # an attached one-off: stdio to a client, not to the logs
    release: int | None = None  # the release's version (the docker backend runs its image)


@dataclass(frozen=True)
class DynoUsage:
    """What a dyno uses, as Heroku's log-runtime-metrics reports it: memory in bytes, pages
    paged in and out (0 where the kernel does not count them), and the CPU seconds its
    processes have used so far (the load is their rate)."""

    rss: int
    swap: int = 0
    cache: int = 0
    pgpgin: int = 0
    pgpgout: int = 0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class Placement:
    """Where a running dyno is, beyond the host ``Backend.address`` gives: the port the
    router reaches it at where the cluster picked one (None: the port it was given), and the
    cluster node it runs on (None: this machine)."""

    port: int | None = None
    node: str | None = None


HERE = Placement()


class DynoEvents(Protocol):
    def dyno_output(self, key: str, line: str) -> None: ...

    def dyno_up(self, key: str) -> None: ...

    def dyno_exited(self, key: str, status: int) -> None:
        """``status`` as Heroku shows it: the exit code, or 128 + signal number."""
        ...

    def dyno_boot_timeout(self, key: str) -> None: ...

    def dyno_oom_killed(self, key: str) -> None:
        """The kernel killed the dyno for crossing its memory limit (reported before exit)."""
        ...


class Backend(Protocol):
    async def start(self, spec: DynoSpec) -> None:
        """Start the dyno; events about it arrive later. Raises PlatformError if it can't."""
        ...

    async def stop(self, key: str, grace: float, *, replaced: bool = False) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` s; return True if it had to be killed.
        ``replaced``: a successor starts in its place next (a restart, a new release), which
        a cluster may use to keep its slot."""
        ...

    def allocate_port(self) -> int:
        """A free port for a web dyno to bind."""
        ...

    def address(self, key: str) -> str | None:
        """The host at which the router reaches the running web dyno ``key`` on its port
        (None: not running): loopback for a process, the container's own address for a
        container, a pod's or task's for a cluster."""
        ...

    def placement(self, key: str) -> Placement:
        """The running dyno ``key``'s port and node where a cluster chose them."""
        ...

    def memory_used(self, key: str) -> int | None:
        """Resident memory of the dyno's processes in bytes, None if it is not running."""
        ...

    def usage(self, key: str) -> DynoUsage | None:
        """Memory and CPU used by the dyno's processes, None if it is not running."""
        ...

    def kill(self, key: str) -> None:
        """SIGKILL the dyno's processes at once (the R15 kill where no cgroup does it)."""
        ...

    def scratch_usage(self, key: str) -> tuple[int, int] | None:
        """(used, cap) in bytes of the dyno's private scratch space, None without one."""
        ...

    async def release_app(self, app_id: str) -> None:
        """The app was destroyed and none of its dynos runs: free what it held (its user)."""
        ...

    async def close(self, grace: float) -> None:
        """At server shutdown, once the manager stopped its dynos: stop what is left and
        free what the backend holds (a cluster's services, a registry process)."""
        ...
