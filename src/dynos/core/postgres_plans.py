"""Postgres add-on rules: Heroku's plans, attachment names, database names, the URL.

The plans are Heroku Postgres's current ones (essential, standard; premium, private and shield
are the standard sizes with high availability dynos cannot give, so they map to the same
limits). A plan sets two things here: the role's connection limit and the storage cap, past
which the database loses INSERT, UPDATE and CREATE until it is back under (Heroku's "access
restricted": reads, DELETE and TRUNCATE still work). The caps are Heroku's, in bytes; a cap
bigger than the disk simply never triggers, the disk fills first (``pg:info`` shows both).

The legacy names (``mini``, ``basic``, ``hobby-dev``, ``hobby-basic``) map to the essential
plans that replaced them, as Heroku migrated them.

An app's first Postgres add-on is its ``DATABASE_URL``; each later one gets
``HEROKU_POSTGRESQL_<COLOR>_URL``, the color one the app does not use yet, as Heroku names them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection
from dataclasses import dataclass

from dynos.errors import UserError

GB = 1024**3
SERVICE = "heroku-postgresql"  # Heroku's add-on service name, which the heroku CLI expects
ALIASES_OF_SERVICE = ("heroku-postgresql", "postgresql", "postgres")
PRIMARY_CONFIG_VAR = "DATABASE_URL"
COLORS = (
    *("AMBER", "AQUA", "BLACK", "BLUE", "BRONZE", "BROWN", "CHARCOAL", "COBALT", "COPPER"),
    *("CRIMSON", "CYAN", "GOLD", "GRAY", "GREEN", "IVORY", "JADE", "LIME", "MAROON", "MAUVE"),
    *("NAVY", "OLIVE", "ONYX", "ORANGE", "PINK", "PUCE", "PURPLE", "RED", "ROSE", "SILVER"),
    *("TEAL", "VIOLET", "WHITE", "YELLOW"),
)


@dataclass(frozen=True)
class PostgresPlan:
    name: str  # as Heroku names it: "essential-0", "standard-2", ...
    connections: int  # the role's CONNECTION LIMIT
    storage_gb: float  # the cap on pg_database_size

    @property
    def storage_bytes(self) -> int:
        return int(self.storage_gb * GB)

    @property
    def display_name(self) -> str:
        """``Essential 0``: how pg:info names it, as Heroku's does."""
        tier, _, number = self.name.partition("-")
        return f"{tier.capitalize()} {number}"


PLANS: tuple[PostgresPlan, ...] = (
    PostgresPlan("essential-0", 20, 1),
    PostgresPlan("essential-1", 20, 10),
    PostgresPlan("essential-2", 40, 32),
    PostgresPlan("standard-0", 120, 64),
    PostgresPlan("standard-2", 400, 256),
    PostgresPlan("standard-3", 500, 512),
    PostgresPlan("standard-4", 500, 768),
    PostgresPlan("standard-5", 500, 1024),
    PostgresPlan("standard-6", 500, 1536),
    PostgresPlan("standard-7", 500, 2048),
    PostgresPlan("standard-8", 500, 3072),
    PostgresPlan("standard-9", 500, 4096),
)
DEFAULT_PLAN = PLANS[0]  # Heroku's, when `addons:create heroku-postgresql` names none

_BY_NAME = {plan.name: plan for plan in PLANS}
_ALIASES = {
    "mini": "essential-0",
    "hobby-dev": "essential-0",
    "basic": "essential-1",
    "hobby-basic": "essential-1",
}
_HIGH_AVAILABILITY_TIERS = ("premium", "private", "shield")  # the standard sizes, with HA
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}")


def is_postgres(argument: str) -> bool:
    """Whether an ``addons:create`` argument (``heroku-postgresql:essential-0``) names
    Postgres."""
    return argument.strip().lower().partition(":")[0] in ALIASES_OF_SERVICE


def find_plan(name: str) -> PostgresPlan:
    """The plan called ``name``; an empty name is the default plan. UserError naming the
    plans for anything else."""
    wanted = name.strip().lower()
    if not wanted:
        return DEFAULT_PLAN
    wanted = _ALIASES.get(wanted, wanted)
    tier, _, number = wanted.partition("-")
    if tier in _HIGH_AVAILABILITY_TIERS:
        wanted = f"standard-{number}"
    plan = _BY_NAME.get(wanted)
    if plan is None:
        known = ", ".join(p.name for p in PLANS)
        raise UserError(f"Unknown Postgres plan {name!r}. Use one of: {known}.")
    return plan


def plan_of(argument: str) -> PostgresPlan:
    """The plan an ``addons:create`` argument or a recorded add-on's plan names
    (``heroku-postgresql:standard-0``)."""
    return find_plan(argument.partition(":")[2])


def config_var_for(taken: Collection[str], rng: random.Random | None = None) -> str:
    """The config var of an app's next Postgres add-on, given the vars the app has:
    DATABASE_URL while it is free, else HEROKU_POSTGRESQL_<COLOR>_URL with a color not taken.
    UserError when every color is."""
    if PRIMARY_CONFIG_VAR not in taken:
        return PRIMARY_CONFIG_VAR
    free = [c for c in COLORS if f"HEROKU_POSTGRESQL_{c}_URL" not in taken]
    if not free:
        raise UserError(
            f"Every HEROKU_POSTGRESQL_<COLOR>_URL is taken ({len(COLORS)} databases): "
            "destroy one first (dynos addons:destroy NAME)."
        )
    return f"HEROKU_POSTGRESQL_{(rng or random.SystemRandom()).choice(free)}_URL"


def attachment_name(config_var: str) -> str:
    """Heroku's attachment name: the config var without ``_URL`` (``DATABASE``)."""
    return config_var.removesuffix("_URL")


def database_name(addon_name: str) -> str:
    """The name of both the database and the role of an add-on (one name for both, so that
    the cluster's pg_hba can let each role reach only its own database): its name with
    underscores for dashes, a valid unquoted identifier for every valid add-on name (lowercase
    letters, digits and dashes, starting with a letter). UserError for anything else."""
    name = addon_name.replace("-", "_")
    if not _IDENTIFIER.fullmatch(name):
        raise UserError(f"Invalid add-on name {addon_name!r} for a database.")
    return name


def database_url(name: str, password: str, port: int) -> str:
    """What the app gets: Heroku's ``postgres://`` form (libpq, psycopg, dj-database-url and
    SQLAlchemy 1.3 read it; SQLAlchemy 1.4+ wants ``postgresql://``, as on Heroku)."""
    return f"postgres://{name}:{password}@127.0.0.1:{port}/{name}"


def storage_action(size_bytes: int, cap_bytes: int, restricted: bool) -> str | None:
    """What the storage check does about a database of ``size_bytes``: ``"restrict"`` (revoke
    INSERT, UPDATE and CREATE) when over its cap and not yet restricted, ``"restore"`` when
    back within it and still restricted, None otherwise."""
    over = size_bytes > cap_bytes
    if over and not restricted:
        return "restrict"
    if restricted and not over:
        return "restore"
    return None


BACKUP_PREFIX = "b"


def backup_number(backup_id: str) -> int:
    """The number of a backup id as pg:backups shows it (``b001``, also ``1``). UserError for
    anything else (it names a file: nothing but digits may come through)."""
    digits = backup_id.strip().lower().removeprefix(BACKUP_PREFIX)
    if not digits.isdigit() or not digits.isascii() or len(digits) > 9 or int(digits) == 0:
        raise UserError(f"Invalid backup {backup_id!r}: name one as pg:backups lists it (b001).")
    return int(digits)


def backup_id(number: int) -> str:
    """``b001``: Heroku's name for the first backup of a database."""
    return f"{BACKUP_PREFIX}{number:03d}"
