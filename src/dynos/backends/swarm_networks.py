"""The swarm backend's app networks: each app's overlay network (``core/swarm_guard.
app_network``), made when its first service is, removed once its tasks have left it
(blocking calls, run in the backend's threads)."""

from __future__ import annotations

from typing import Any

import docker

from dynos.core.containers import LABEL
from dynos.core.swarm_guard import app_network


def ensure_network(api: Any, server: str, app_id: str) -> str:
    """The app's overlay network, made when missing."""
    name = app_network(server, app_id)
    if not any(n["Name"] == name for n in api.networks(names=[name])):
        labels = {f"{LABEL}.server": server, f"{LABEL}.app-id": app_id}
        try:
            api.create_network(name, driver="overlay", labels=labels)
        except docker.errors.APIError as exc:
            if "already exists" not in str(exc):
                raise
    return name


def remove_networks(api: Any, server: str, app_id: str | None = None) -> list[str]:
    """The server's app networks (or one app's), removed; those still in use (their tasks
    stopping) are returned, to try again."""
    labels = [f"{LABEL}.server={server}"]
    if app_id is not None:
        labels.append(f"{LABEL}.app-id={app_id}")
    left = []
    for network in api.networks(filters={"label": labels}):
        try:
            api.remove_network(network["Id"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            left.append(str(network["Name"]))
    return left
