"""The memory watch's decisions (Heroku's R14 and R15), as a pure function.

Over the size's quota a dyno keeps running but the app is told, at most once a minute:
``Process running mem=700M(136.7%)`` then ``Error R14 (Memory quota exceeded)``. At twice the
quota it is killed: ``Error R15 (Memory quota vastly exceeded)``, ``Stopping process with
SIGKILL``. With cgroups the kernel kills at that limit itself; the watch then only reports.
"""

from __future__ import annotations

from dataclasses import dataclass

R14_EVERY = 60.0  # seconds between two R14 reports about the same dyno


@dataclass(frozen=True)
class MemoryVerdict:
    lines: tuple[str, ...]  # log lines to emit, in order
    kill: bool
    reported_at: float | None  # the new "last R14 report" time


def usage_line(used_bytes: int, quota_mb: int) -> str:
    used_mb = used_bytes / (1024 * 1024)
    return f"Process running mem={used_mb:.0f}M({100 * used_mb / quota_mb:.1f}%)"


def assess_memory(
    used_bytes: int, quota_mb: int, last_report: float | None, now: float
) -> MemoryVerdict:
    """What to log and whether to kill, for a dyno using ``used_bytes`` at ``now``."""
    quota = quota_mb * 1024 * 1024
    lines: tuple[str, ...]
    if used_bytes >= 2 * quota:
        lines = (
            usage_line(used_bytes, quota_mb),
            "Error R15 (Memory quota vastly exceeded)",
            "Stopping process with SIGKILL",
        )
        return MemoryVerdict(lines, True, now)
    if used_bytes > quota and (last_report is None or now - last_report >= R14_EVERY):
        lines = (usage_line(used_bytes, quota_mb), "Error R14 (Memory quota exceeded)")
        return MemoryVerdict(lines, False, now)
    return MemoryVerdict((), False, last_report)
