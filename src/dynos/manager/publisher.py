"""Keeps the router's table in step with the dynos: the manager publishes after every change
of a web dyno's state (and of an app's custom domains), and the publisher writes what
:func:`routes_from_dynos` says."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from dynos.core.routes import WebDyno, routes_from_dynos
from dynos.router.route import DynoEndpoint
from dynos.router.routing_table import RoutingTable
from dynos.store.models import AppState

# How long a wait for the router processes to follow lasts at most (they answer in
# milliseconds; one that is restarting gets the whole table when it is back).
FOLLOW_TIMEOUT = 2.0


class RoutePublisher:
    def __init__(self, routes: RoutingTable) -> None:
        self._routes = routes

    def publish(
        self, view: Iterable[AppState], web_dynos: Callable[[str], Sequence[WebDyno]]
    ) -> None:
        """Write every app of ``view`` to the router's table, from its web dynos (by app
        id), and drop the apps that are gone."""
        names = set()
        for state in view:
            routes = routes_from_dynos(
                state.app.name, state.settings, web_dynos(state.app.id), state.domains
            )
            self._routes.set_app(
                routes.app_name,
                [DynoEndpoint(name, host, port) for name, host, port in routes.upstreams],
                crashed=routes.crashed,
                idle=routes.idle,
                request_timeout=routes.request_timeout,
                hosts=routes.hosts,
            )
            names.add(routes.app_name)
        self._routes.retain(names)

    async def drain(self, app_name: str, dyno_name: str, grace: float) -> None:
        """Return once the dyno (out of the rotation already) serves no request, or after
        ``grace`` seconds."""
        await self._routes.wait_drained(app_name, dyno_name, grace)

    async def wait_followers(self, timeout: float = FOLLOW_TIMEOUT) -> None:
        """Return once every router process routes as the last publish said (or after
        ``timeout``)."""
        await self._routes.wait_followers(timeout)
