"""Which dyno gets a request: round robin over the app's live web dynos.

The later router replaces this with least-outstanding over two random choices; the proxy
only needs "the backends to try, in order".
"""

from __future__ import annotations

from dynos.router.routing_table import AppRoute, Backend


def round_robin(route: AppRoute) -> tuple[Backend, ...]:
    """The next backend in turn first, then every other one once (for a refused connect).

    Advances ``route.cursor``. ``route.backends`` must not be empty.
    """
    backends = route.backends
    start = route.cursor % len(backends)
    route.cursor = start + 1
    if start == 0:
        return backends
    return backends[start:] + backends[:start]
