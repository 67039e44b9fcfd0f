"""Reading the mount table: which mounts can hold what a user leaves (pure)."""

from __future__ import annotations

from pathlib import Path

from dynos.backends.mounts import Mount, parse_mountinfo, storage_mounts

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/tools ro,nosuid,relatime - tmpfs tools ro,size=4k
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 27 0:40 / /tmp/with\\040space rw - xfs /dev/vdb rw
"""


def test_mountinfo_gives_target_type_and_read_only() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts[0] == Mount(Path("/proc"), "proc", False)
    assert mounts[3] == Mount(Path("/mnt/tools"), "tmpfs", True)
    assert mounts[-1] == Mount(Path("/tmp/with space"), "xfs", False)


def test_storage_mounts_skip_kernel_interfaces_read_only_and_repeated_mounts() -> None:
    assert storage_mounts(MOUNTINFO) == [Path("/dev/shm"), Path("/"), Path("/tmp/with space")]
