"""Redis add-on plans: the one table of names, data sizes and connection limits.

The sizes and connection limits are Heroku Data for Redis's (its technical characterization
lists each plan's RAM and connection limit); ``private-N`` and ``shield-N`` are the same sizes
as ``premium-N``, and ``hobby-dev`` is the old name of ``mini``. As on Heroku, the data may
fill the plan's size and no more: ``maxmemory`` is the plan's size and the policy is
``noeviction``, so a write past it gets Redis's OOM error instead of silently losing keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynos.core.sizes import DynoSize
from dynos.errors import UserError

MB = 1024 * 1024
EVICTION_POLICY = "noeviction"  # Heroku's default maxmemory-policy
SERVER_OVERHEAD_MB = 64  # redis-server's own memory beside the data: code, buffers, AOF


@dataclass(frozen=True)
class RedisPlan:
    name: str  # as Heroku names it: "mini", "premium-0", ...
    memory_mb: int  # the data size (maxmemory)
    max_clients: int  # Heroku's connection limit

    @property
    def maxmemory_bytes(self) -> int:
        return self.memory_mb * MB

    @property
    def memory_cap_bytes(self) -> int:
        """The hard cap on the server's memory (its cgroup, as root): twice the data, since a
        snapshot or AOF rewrite forks a child whose pages are copied as writes change them,
        plus the server's own overhead."""
        return (2 * self.memory_mb + SERVER_OVERHEAD_MB) * MB


PLANS: tuple[RedisPlan, ...] = (
    RedisPlan("mini", 25, 20),
    RedisPlan("premium-0", 50, 40),
    RedisPlan("premium-1", 100, 80),
    RedisPlan("premium-2", 250, 200),
    RedisPlan("premium-3", 500, 400),
    RedisPlan("premium-4", 750, 700),
    RedisPlan("premium-5", 1024, 1000),
    RedisPlan("premium-7", 7 * 1024, 10000),
    RedisPlan("premium-9", 10 * 1024, 25000),
    RedisPlan("premium-10", 25 * 1024, 40000),
    RedisPlan("premium-12", 50 * 1024, 65000),
    RedisPlan("premium-14", 100 * 1024, 65000),
)
SERVICE = "redis"  # the service an add-on of these plans records
DEFAULT_PLAN = PLANS[0]  # Heroku's, when `addons:create heroku-redis` names none

_BY_NAME = {plan.name: plan for plan in PLANS}
_PRIVATE_SIZES = ("7", "9", "10", "12", "14")  # private-N and shield-N exist for these
_ALIASES = {"hobby-dev": "mini", "local": "mini"}  # "local": add-ons made before plans existed


def find_plan(name: str) -> RedisPlan:
    """The plan called ``name`` (``mini``, ``premium-0``, ``private-7``, ...); an empty name is
    the default plan. Raises UserError naming the plans for anything else."""
    wanted = name.strip().lower()
    if not wanted:
        return DEFAULT_PLAN
    wanted = _ALIASES.get(wanted, wanted)
    tier, _, number = wanted.partition("-")
    if tier in ("private", "shield") and number in _PRIVATE_SIZES:
        wanted = f"premium-{number}"
    plan = _BY_NAME.get(wanted)
    if plan is None:
        known = ", ".join(f"{p.name} ({p.memory_mb} MB)" for p in PLANS)
        raise UserError(f"Unknown Redis plan {name!r}. Use one of: {known}.")
    return plan


def service_for(plan: str) -> str:
    """The service a ``addons:create`` argument names: ``redis``, or Heroku's
    ``heroku-redis`` with any plan (``heroku-redis:mini``). UserError for anything else."""
    service = plan.strip().lower().partition(":")[0]
    if service in ("redis", "heroku-redis"):
        return SERVICE
    raise UserError(
        f"Unknown add-on {plan!r}: dynos provides redis and heroku-postgresql "
        "(dynos addons:create heroku-postgresql)."
    )


def plan_for(argument: str) -> RedisPlan:
    """The plan a ``addons:create`` argument names (``redis:premium-0``), or a recorded
    add-on's plan; the default plan when it names none. UserError for an unknown one."""
    service_for(argument)
    return find_plan(argument.partition(":")[2])


def cgroup_size(plan: RedisPlan) -> DynoSize:
    """The limits of an add-on's cgroup, as a size: cgroups cap memory at twice a size's
    quota, so the quota is half the plan's cap; redis-server needs a few threads and the
    child of a snapshot."""
    quota_mb = plan.memory_cap_bytes // (2 * 1024 * 1024)
    return DynoSize(f"redis {plan.name}", (), quota_mb, 1, False, 1, 64)
