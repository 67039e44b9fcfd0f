"""An app's route as the manager sets it: which web dynos take its requests, and how.

Plain values and pure functions, no event loop: the live state the router keeps per dyno
while requests run is in dyno_slot.py, and routing_table.py joins the two. The router
processes beside the server's (processes.py) receive the routes as JSON
(``routes_to_json``, ``routes_from_json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynos.core.app_settings import DEFAULT_REQUEST_TIMEOUT


@dataclass(frozen=True, slots=True)
class DynoEndpoint:
    """Where one web dyno takes requests: its name and its address."""

    dyno: str  # "web.1"
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Route:
    """One app's route: the manager replaces it whole on every change."""

    app: str
    endpoints: tuple[DynoEndpoint, ...] = ()
    # Why there is no endpoint, for the error code: web dynos exist but all crashed -> H10,
    # no web dyno in the formation -> H14.
    crashed: bool = False
    # H12: how long a dyno has to start its response.
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # The app's only web dyno is asleep (or coming): a request wakes it and waits for it.
    idle: bool = False
    # Its custom domains: more hostnames (lowercase, no port) that route to it.
    hosts: tuple[str, ...] = ()


def host_name(host: str) -> str:
    """The name a ``Host`` header value gives, as hostnames are kept: without the port,
    lowercase, without a trailing dot (``WWW.Example.com.:5000`` -> ``www.example.com``)."""
    return host.split(":", 1)[0].lower().removesuffix(".")


def app_for_host(host: str, suffix: str) -> str | None:
    """The app a ``Host`` header value names under the domain ``suffix`` (``.localhost``):
    ``foo.localhost:5000`` -> ``foo``; None for a host outside the domain."""
    name = host_name(host)
    if not name.endswith(suffix):
        return None
    return name[: -len(suffix)]


def routes_to_json(routes: list[Route]) -> list[dict[str, Any]]:
    """``routes`` for another router process: JSON-ready."""
    return [
        {
            "app": route.app,
            "endpoints": [[e.dyno, e.host, e.port] for e in route.endpoints],
            "crashed": route.crashed,
            "request_timeout": route.request_timeout,
            "idle": route.idle,
            "hosts": list(route.hosts),
        }
        for route in routes
    ]


def routes_from_json(data: list[dict[str, Any]]) -> list[Route]:
    """The routes ``routes_to_json`` wrote (the server's process wrote them: trusted)."""
    return [
        Route(
            item["app"],
            tuple(DynoEndpoint(dyno, host, port) for dyno, host, port in item["endpoints"]),
            crashed=item["crashed"],
            request_timeout=item["request_timeout"],
            idle=item["idle"],
            hosts=tuple(item["hosts"]),
        )
        for item in data
    ]
