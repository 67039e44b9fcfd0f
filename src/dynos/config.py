"""Server settings and where a server's files live under its home directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dynos.core.acm import LETS_ENCRYPT_DIRECTORY
from dynos.core.containers import DEFAULT_STACK_IMAGE


def default_home() -> Path:
    """``$DYNOS_HOME``, else ``~/.local/share/dynos`` (``/var/lib/dynos`` for root).

    Root's dynos run as other users, who cannot enter /root to reach their code: a system
    daemon's place suits root better.
    """
    env = os.environ.get("DYNOS_HOME")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/dynos")
    return Path.home() / ".local" / "share" / "dynos"


@dataclass(frozen=True)
class ServerConfig:
    home: Path
    api_host: str = "127.0.0.1"
    api_port: int = 5050
    router_host: str = "0.0.0.0"
    router_port: int = 5000
    # The router's HTTPS port (0: a free one); TLS ends there, the dynos get plain HTTP.
    https_port: int = 5443
    # Where `heroku run` attaches (api/rendezvous.py: TLS, beside the API on api_host; 0: free).
    rendezvous_port: int = 5001
    router_processes: int = 1  # router processes on the router's port (router/processes.py)
    router_priority: int = -10  # nice value of the server process (dynos.priority)
    # Client connections the router holds, in all and from one address (router/limits.py);
    # None: derived from the file descriptor limit.
    router_max_connections: int | None = None
    router_max_connections_per_client: int | None = None
    domain: str = "localhost"
    stop_grace: float = 30.0  # seconds between SIGTERM and SIGKILL when a dyno stops
    boot_timeout: float = 60.0  # seconds a web dyno has to bind its PORT
    idle_after: float = 3600.0  # seconds without a request before a lone 1X web dyno idles
    cycle_after: float | None = None  # restart dynos older than this (daily cycling); off
    runtime_metrics_every: float = 20.0  # seconds between samples of dynos' memory and load
    crash_backoff: float = 1.0  # first delay between restarts of a dyno that keeps crashing
    crash_backoff_max: float = 300.0  # the delay doubles up to this
    backup_every: float = 3600.0  # seconds between backups of the database (0: none)
    backup_keep: int = 24  # scheduled backups kept in <home>/backups
    build_timeout: float = 900.0  # seconds a build may take (Heroku's 15 minutes)
    release_timeout: float = 3600.0  # seconds a release command may take (Heroku's hour)
    max_unpacked_size: int = 1024  # MB an upload may unpack to (all its files together)
    max_unpacked_files: int = 100_000  # files, directories and links an upload may hold
    scratch_mb: int = 512  # private scratch (/tmp, /dev/shm ...) of a Standard-1X dyno, as root
    # A storage cap on every Postgres database below its plan's (a small disk); 0: the plans'.
    pg_storage_cap_mb: int = 0
    # Automatic certificates (platform/acm.py): the ACME directory, the CA file its HTTPS is
    # checked against (None: the system's), the account's contact, and when to renew (None:
    # with a third of the lifetime left, 30 days before expiry at the latest).
    acme_directory: str = LETS_ENCRYPT_DIRECTORY
    acme_ca_bundle: Path | None = None
    acme_email: str | None = None
    acme_renew_before: float | None = None
    # Log drains may reach loopback and link-local addresses (core/drains.py): for tests and
    # single-machine setups only, where the server's own ports are not a tenant's target.
    drains_allow_loopback: bool = False
    drain_buffer: int = 10_000  # lines held per log drain; more are dropped and counted (L10)
    # What runs dynos (server_backend.py): "local" processes, "docker" containers of
    # release images made on the stack image, or "swarm" services of them on a swarm whose
    # nodes pull from ``registry`` (None: the server runs Debian's docker-registry itself).
    backend: str = "local"
    stack_image: str = DEFAULT_STACK_IMAGE
    registry: str | None = None


@dataclass(frozen=True)
class HomePaths:
    """The layout of a server home; both the server and the CLI read it."""

    home: Path

    @property
    def database(self) -> Path:
        return self.home / "dynos.db"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one process that owns the home: see dynos.home_lock."""
        return self.home / "server.lock"

    @property
    def backups(self) -> Path:
        return self.home / "backups"

    @property
    def credentials(self) -> Path:
        return self.home / "credentials"

    @property
    def server_json(self) -> Path:
        """Where the running server is (its API and router); gone when it stops."""
        return self.home / "server.json"

    @property
    def last_server_json(self) -> Path:
        """``server.json`` as the last server that stopped left it: where to expect the next."""
        return self.home / "server.last.json"

    @property
    def slugs(self) -> Path:
        return self.home / "slugs"

    @property
    def builds(self) -> Path:
        return self.home / "builds"

    @property
    def addons(self) -> Path:
        """Each add-on's data (and its password, in its config): closed to everyone else."""
        return self.home / "addons"

    @property
    def tls(self) -> Path:
        """The platform CA (``ca.pem``; ``ca.key`` 0600) and the certificates the router
        serves (platform/tls_files.py has the layout)."""
        return self.home / "tls"

    @property
    def acme(self) -> Path:
        """The ACME account's key (0600), for automatic certificates (platform/acme_client.py)."""
        return self.tls / "acme"

    @property
    def postgres(self) -> Path:
        """The Postgres cluster of the add-ons, its credentials and backups."""
        return self.home / "postgres"

    @property
    def git(self) -> Path:
        """The apps' git repositories (``repos/<app id>.git``), the pre-receive hook, and the
        pushed trees being unpacked: the server's only."""
        return self.home / "git"
