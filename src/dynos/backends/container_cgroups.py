"""A container's cgroup files, read without asking the engine: its memory (what R14 and the
metrics read) and the CPU seconds it used (the metrics' dyno load). cgroup v1 under the
cgroupfs or systemd driver, or v2."""

from __future__ import annotations

from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def memory_file(container_id: str) -> Path | None:
    """The container's memory usage file: cgroup v1 (cgroupfs or systemd driver) or v2."""
    for path in (
        _CGROUP_ROOT / "memory" / "docker" / container_id / "memory.usage_in_bytes",
        _CGROUP_ROOT
        / "memory"
        / "system.slice"
        / f"docker-{container_id}.scope"
        / "memory.usage_in_bytes",
        _CGROUP_ROOT / "docker" / container_id / "memory.current",
        _CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope" / "memory.current",
    ):
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


def cgroup_cpu_seconds(container_id: str) -> float | None:
    """CPU seconds the container's processes used so far; None where no cgroup file says."""
    for path, scale in (
        (_CGROUP_ROOT / "cpuacct" / "docker" / container_id / "cpuacct.usage", 1e-9),
        (
            _CGROUP_ROOT
            / "cpuacct"
            / "system.slice"
            / f"docker-{container_id}.scope"
            / "cpuacct.usage",
            1e-9,
        ),
        (_CGROUP_ROOT / "docker" / container_id / "cpu.stat", 1e-6),
        (_CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat", 1e-6),
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
