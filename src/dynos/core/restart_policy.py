"""When to restart a crashed dyno: at once the first time, then with doubling back-off.

A dyno that stayed up for ``stable_after`` seconds before it crashed counts as a first crash
again; a new release starts a fresh dyno, whose count starts at zero.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def delay(self, crashes: int) -> float:
        """Seconds to wait before restarting a dyno that has crashed ``crashes`` times in a row."""
        if crashes <= 1:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (crashes - 2)))
