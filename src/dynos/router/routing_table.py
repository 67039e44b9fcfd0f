"""The routing table: for each app, the web dynos that may take requests now.

The manager owns it and pushes every change (a dyno came up, is draining, stopped); the router
only reads it, once per request, without touching the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backend:
    """One web dyno the router can send requests to."""

    dyno: str  # "web.1"
    host: str
    port: int


@dataclass(slots=True)
class AppRoute:
    app: str
    backends: tuple[Backend, ...] = ()
    # Why there is no backend, for the error code: web dynos exist but all crashed -> H10,
    # no web dyno in the formation -> H14.
    crashed: bool = False
    # Round-robin cursor of the first router; the balancer of a later router keeps its own.
    cursor: int = field(default=0)


class RoutingTable:
    def __init__(self, domain: str) -> None:
        self.domain = domain.lower()
        self._suffix = "." + self.domain
        self._apps: dict[str, AppRoute] = {}

    def set_app(self, app: str, backends: list[Backend], *, crashed: bool = False) -> None:
        route = self._apps.get(app)
        if route is None:
            self._apps[app] = AppRoute(app, tuple(backends), crashed)
        else:
            route.backends = tuple(backends)
            route.crashed = crashed

    def remove_app(self, app: str) -> None:
        self._apps.pop(app, None)

    def retain(self, apps: set[str]) -> None:
        """Forget every app not in ``apps`` (destroyed or renamed)."""
        for app in self._apps.keys() - apps:
            del self._apps[app]

    def lookup(self, host: str) -> AppRoute | None:
        """The route for a ``Host`` header value (``foo.localhost:5000`` -> app ``foo``)."""
        name = host.split(":", 1)[0].lower()
        if not name.endswith(self._suffix):
            return None
        return self._apps.get(name[: -len(self._suffix)])
