"""When to restart a crashed dyno: at once the first time, then with doubling back-off.

A dyno that stayed up for ``stable_after`` seconds before it crashed counts as a first crash
again; a new release starts a fresh dyno, whose count starts at zero. A web dyno that could
not bind its ``$PORT`` because another process had it (it said "Address already in use") is
not at fault: it is restarted at once, on a new port, up to ``PORT_RETRIES`` crashes in a row
(an app that binds a fixed port of its own would otherwise restart without pause).
"""

from __future__ import annotations

from dataclasses import dataclass

PORT_RETRIES = 3  # crashes in a row restarted at once when the dyno's port was taken
# What Python, Node, Go, Ruby and gunicorn say when a bind finds the address taken.
_PORT_TAKEN = ("Address already in use", "EADDRINUSE", "address already in use")


def says_port_taken(line: str) -> bool:
    """Whether a dyno's output ``line`` reports a bind that failed on a taken address."""
    return any(words in line for words in _PORT_TAKEN)


@dataclass(frozen=True)
class RestartPolicy:
    base_delay: float = 1.0
    max_delay: float = 300.0
    stable_after: float = 60.0

    def crash_count(self, previous: int, started_at: float, crashed_at: float) -> int:
        """The consecutive-crash count after a crash at ``crashed_at``."""
        if crashed_at - started_at >= self.stable_after:
            return 1
        return previous + 1

    def delay(self, crashes: int, port_taken: bool = False) -> float:
        """Seconds to wait before restarting a dyno that has crashed ``crashes`` times in a row
        (``port_taken``: the last time because its port was taken, which is the platform's
        doing)."""
        if crashes <= 1 or (port_taken and crashes <= PORT_RETRIES):
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (crashes - 2)))
