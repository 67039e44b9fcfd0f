"""One-off dynos (``dynos run``): how they are named, and what an attached one waits for.

A one-off dyno ``run.NNNN`` runs a command from its app's current release and config vars,
outside the formation: the planner leaves it alone (until its app is destroyed), it is never
restarted, and the manager forgets it once its process has exited (Heroku's ``State changed
from up to complete``). A detached one starts at once and its output goes to the app's logs.
An attached one starts only when its client connects to its ``attach_url``, so that none of
its output is lost; if no client comes within :data:`ATTACH_TIMEOUT` it is given up (R13).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from dynos.backends.attach import Terminal
from dynos.errors import Conflict

ATTACH_TIMEOUT = 60.0  # seconds an attached one-off dyno waits for its client
RUN_NUMBERS = range(1000, 10000)  # run.NNNN: four random digits, as Heroku's


@dataclass
class Attachment:
    """An attached one-off dyno's client: the secret it must show, and once connected its
    terminal."""

    tty: bool
    env: dict[str, str]  # the one-off's own env, on top of the config vars
    deadline: float  # clock time after which a client that has not come is given up
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    terminal: Terminal | None = None


def pick_run_number(taken: Collection[int], rng: random.Random | None = None) -> int:
    """A random four-digit number that no one-off dyno of the app uses.

    Raises Conflict when all of them are taken.
    """
    free = [n for n in RUN_NUMBERS if n not in taken]
    if not free:
        raise Conflict("Too many one-off dynos are running: stop some (dynos ps:stop run.NNNN).")
    return (rng or random.SystemRandom()).choice(free)


def expand_command(command: str, processes: Mapping[str, str]) -> str:
    """The command to run: a Procfile process type as the first word stands for its command
    (``dynos run worker --once``, as ``heroku run`` does); anything else runs as it is."""
    first, _, rest = command.strip().partition(" ")
    if first in processes:
        return f"{processes[first]} {rest}".strip()
    return command


def window_size(env: Mapping[str, str]) -> tuple[int, int]:
    """The terminal's columns and rows, as the client sent them in ``COLUMNS`` and ``LINES``
    (the way the Heroku CLI does); 80x24 when they are missing or not numbers."""
    sizes = []
    for key, default in (("COLUMNS", 80), ("LINES", 24)):
        value = env.get(key, "")
        number = value.isascii() and value.isdigit() and len(value) < 6  # not "²", not 10**9
        sizes.append(int(value) if number and 0 < int(value) < 10000 else default)
    return sizes[0], sizes[1]
