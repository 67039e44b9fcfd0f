"""Dyno sizes: the one table of names, memory quotas, CPU shares and idling rules.

Heroku's current names and the seed's short ones (``1X``, ``2X``, ``PX``) live side by side;
every lookup is case-insensitive and goes through :func:`find_size`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynos.errors import UserError


@dataclass(frozen=True)
class DynoSize:
    name: str  # Heroku's display name, as `ps` prints it
    aliases: tuple[str, ...]
    memory_mb: int
    cpu_share: int
    may_idle: bool  # a lone web dyno of this size idles after a quiet spell
    compute: int  # Heroku's "compute" units, shown by GET /dyno-sizes
    max_processes: int  # Heroku's process/thread limit per dyno of this size

    @property
    def id(self) -> str:
        return self.name.lower()

    @property
    def memory_limit_bytes(self) -> int:
        """The hard limit: twice the quota, where Heroku's R15 kill happens."""
        return 2 * self.memory_mb * 1024 * 1024


SIZES: tuple[DynoSize, ...] = (
    DynoSize("Eco", ("eco",), 512, 1, True, 1, 256),
    DynoSize("Basic", ("basic",), 512, 1, False, 1, 256),
    DynoSize("Standard-1X", ("standard-1x", "1x"), 512, 1, True, 1, 256),
    DynoSize("Standard-2X", ("standard-2x", "2x"), 1024, 2, False, 2, 512),
    DynoSize("Performance-M", ("performance-m",), 2560, 4, False, 4, 16384),
    DynoSize("PX", ("px",), 6144, 8, False, 8, 32768),
    DynoSize("Performance-L", ("performance-l",), 14336, 8, False, 8, 32768),
)

DEFAULT_SIZE = SIZES[2]

_BY_NAME = {alias: size for size in SIZES for alias in (size.id, *size.aliases)}


def find_size(name: str) -> DynoSize:
    """Return the size called ``name`` (any alias, any case); raise UserError if there is none."""
    size = _BY_NAME.get(name.strip().lower())
    if size is None:
        known = ", ".join(s.name for s in SIZES)
        raise UserError(f"Unknown dyno size {name!r}. Use one of: {known} (or 1X, 2X).")
    return size
