"""The scratch watch's decision, as a pure function: when a dyno's private scratch space is full.

Each dyno's /tmp, /dev/shm and other temporary directories share one capped tmpfs
(backends/scratch.py). Past the cap a write there fails with ENOSPC inside the dyno, which
the app may well not log: the platform says it once each time the space fills up, so that
``dynos logs`` tells why. It is full when less than 1% of it is free (a write that fails for
want of room leaves the rest filled), and counts as full until a tenth of it is free again.
"""

from __future__ import annotations

from dataclasses import dataclass

FULL_BELOW = 0.01  # free fraction under which the scratch counts as full
FREE_AGAIN = 0.10  # free fraction above which it no longer does


@dataclass(frozen=True)
class ScratchVerdict:
    full: bool  # the new state to remember for the dyno
    line: str | None  # a platform log line to emit, if any


def scratch_line(used_bytes: int, cap_bytes: int) -> str:
    mb = 1024 * 1024
    return (
        f"Error: scratch space full ({used_bytes // mb}M of {cap_bytes // mb}M): /tmp, /dev/shm "
        "and the dyno's other temporary directories share it, and writes there fail with "
        "ENOSPC (No space left on device) until files are deleted; larger dyno sizes have more"
    )


def assess_scratch(used_bytes: int, cap_bytes: int, was_full: bool) -> ScratchVerdict:
    """Whether the scratch of a dyno that uses ``used_bytes`` of ``cap_bytes`` is full, and
    what to log: one line when it becomes full, none while it stays so."""
    if cap_bytes <= 0:
        return ScratchVerdict(was_full, None)
    free = (cap_bytes - used_bytes) / cap_bytes
    if free < FULL_BELOW:
        return ScratchVerdict(True, None if was_full else scratch_line(used_bytes, cap_bytes))
    if was_full and free <= FREE_AGAIN:
        return ScratchVerdict(True, None)
    return ScratchVerdict(False, None)
