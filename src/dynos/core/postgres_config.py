"""The server's Postgres cluster's configuration, as its start writes and passes it: pure.

``pg_hba.conf`` (who may connect, from where, to what) and the settings ``postgres`` runs
with over its postgresql.conf. The cluster's life is ``platform/postgres_server.py``'s.
"""

from __future__ import annotations

SUPERUSER = "dynos"
MAX_CONNECTIONS = 600  # the cluster's; each role has its plan's limit below it


def hba(subnet: str | None = None) -> str:
    """pg_hba.conf: loopback, and ``subnet`` (container dynos: the docker bridge's, or any
    address on a swarm, whose firewall says who reaches the port) for the apps' roles alone,
    never the superuser."""
    return f"""\
# Written by the dynos server at every start: edits are lost.
# SSL and a SCRAM password only; each app's role reaches only the database of its name.
hostssl all      {SUPERUSER} 127.0.0.1/32 scram-sha-256
hostssl sameuser all   127.0.0.1/32 scram-sha-256
{f"hostssl sameuser all   {subnet} scram-sha-256" if subnet else ""}
"""


def server_options(port: int, also_listen: str | None = None) -> list[str]:
    """What ``postgres`` runs with, over whatever its postgresql.conf says."""
    settings = {
        "listen_addresses": ",".join(["127.0.0.1", *([also_listen] if also_listen else [])]),
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": str(MAX_CONNECTIONS),
        "ssl": "on",
        "ssl_cert_file": "server.crt",
        "ssl_key_file": "server.key",
        "password_encryption": "scram-sha-256",
        "logging_collector": "off",
        "log_line_prefix": "%m [%p] %q%u@%d ",
    }
    return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
