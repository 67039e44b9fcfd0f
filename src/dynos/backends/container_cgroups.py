"""A container's cgroup files, read without asking the engine: its memory (what R14 and the
metrics read) and the CPU seconds it used (the metrics' dyno load). cgroup v1 under the
cgroupfs or systemd driver, or v2.

Also the swarm guard's usage reporter (``backends/swarm_usage.py``): every node's guard runs
this file as a program (``python3 -I -c SOURCE ROOT SECONDS``, the stack image's Python),
which prints every SECONDS one line, ``dynos-usage {"<container id>": [bytes, cpu seconds],
...}``, for every container of its node's engine, read under ROOT (the node's cgroup root as
the guard sees it). So this file imports the standard library only, and runs on the stack
image's Python (3.11).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
REPORT_PREFIX = "dynos-usage "
_ID = re.compile(r"[0-9a-f]{64}")


def _memory_candidates(root: Path, container_id: str) -> tuple[Path, ...]:
    return (
        root / "memory" / "docker" / container_id / "memory.usage_in_bytes",
        root / "memory" / "system.slice" / f"docker-{container_id}.scope" / "memory.usage_in_bytes",
        root / "docker" / container_id / "memory.current",
        root / "system.slice" / f"docker-{container_id}.scope" / "memory.current",
    )


def memory_file(container_id: str, root: Path = _CGROUP_ROOT) -> Path | None:
    """The container's memory usage file: cgroup v1 (cgroupfs or systemd driver) or v2."""
    for path in _memory_candidates(root, container_id):
        if path.exists():
            return path
    return None


def cgroup_memory(usage_file: Path) -> int | None:
    try:
        used = int(usage_file.read_text())
        stat = (usage_file.parent / "memory.stat").read_text()
    except (OSError, ValueError):
        return None
    inactive_key = (
        "total_inactive_file" if usage_file.name.endswith("_in_bytes") else "inactive_file"
    )
    for line in stat.splitlines():
        name, _, value = line.partition(" ")
        if name == inactive_key and value.isdigit():
            return max(0, used - int(value))
    return used


def cgroup_cpu_seconds(container_id: str, root: Path = _CGROUP_ROOT) -> float | None:
    """CPU seconds the container's processes used so far; None where no cgroup file says."""
    for path, scale in (
        (root / "cpuacct" / "docker" / container_id / "cpuacct.usage", 1e-9),
        (
            root / "cpuacct" / "system.slice" / f"docker-{container_id}.scope" / "cpuacct.usage",
            1e-9,
        ),
        (root / "docker" / container_id / "cpu.stat", 1e-6),
        (root / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat", 1e-6),
    ):
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.name == "cpu.stat":  # v2: "usage_usec N" among others
            for line in text.splitlines():
                name, _, value = line.partition(" ")
                if name == "usage_usec" and value.isdigit():
                    return int(value) * scale
            return None
        return int(text) * scale if text.strip().isdigit() else None
    return None


def container_ids(root: Path = _CGROUP_ROOT) -> set[str]:
    """The ids of the engine's containers that have a memory cgroup under ``root``."""
    found = set()
    for parent, prefix, suffix in (
        (root / "memory" / "docker", "", ""),
        (root / "memory" / "system.slice", "docker-", ".scope"),
        (root / "docker", "", ""),
        (root / "system.slice", "docker-", ".scope"),
    ):
        try:
            names = [entry.name for entry in parent.iterdir()]
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and name.endswith(suffix):
                bare = name[len(prefix) : len(name) - len(suffix)]
                if _ID.fullmatch(bare):
                    found.add(bare)
    return found


def node_usage(root: Path = _CGROUP_ROOT) -> dict[str, list[float]]:
    """Every container's memory (bytes) and CPU seconds, by id; one gone meanwhile is left
    out."""
    usage: dict[str, list[float]] = {}
    for container in sorted(container_ids(root)):
        usage_file = memory_file(container, root)
        used = None if usage_file is None else cgroup_memory(usage_file)
        if used is not None:
            cpu = cgroup_cpu_seconds(container, root) or 0.0
            usage[container] = [used, round(cpu, 3)]
    return usage


def report_line(usage: dict[str, list[float]]) -> str:
    return REPORT_PREFIX + json.dumps(usage, separators=(",", ":"))


def report_lines(usage: dict[str, list[float]], per_line: int = 100) -> list[str]:
    """The report as lines of at most ``per_line`` containers (about 9 KB: the engine splits
    a log line at 16 KiB); one empty report for a node without containers."""
    ids = sorted(usage)
    chunks = [ids[i : i + per_line] for i in range(0, len(ids), per_line)] or [[]]
    return [report_line({c: usage[c] for c in chunk}) for chunk in chunks]


def main(argv: list[str]) -> None:
    root, seconds = Path(argv[1]), float(argv[2])
    while True:
        print("\n".join(report_lines(node_usage(root))), flush=True)
        time.sleep(seconds)


if __name__ == "__main__":
    main(sys.argv)
