"""A container's cgroup files, and the swarm guard's usage reporter that reads them on every
node: fake cgroup trees (v1 under both drivers, v2), the reporter run as the guard runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dynos.backends import container_cgroups
from dynos.backends.container_cgroups import node_usage, report_line, report_lines
from dynos.core.swarm_usage import parse_report

A = "a" * 64
B = "b" * 64


def v1_tree(root: Path) -> None:
    """Two containers under cgroup v1: one by the cgroupfs driver, one by systemd's."""
    for memory, cpu, name in (
        (root / "memory/docker", root / "cpuacct/docker", A),
        (root / "memory/system.slice", root / "cpuacct/system.slice", f"docker-{B}.scope"),
    ):
        (memory / name).mkdir(parents=True)
        (memory / name / "memory.usage_in_bytes").write_text("300000000\n")
        (memory / name / "memory.stat").write_text("cache 5\ntotal_inactive_file 100000000\n")
        (cpu / name).mkdir(parents=True)
        (cpu / name / "cpuacct.usage").write_text("2500000000\n")
    (root / "memory/docker/not-a-container").mkdir()  # the engine's own, or anything else


def v2_tree(root: Path) -> None:
    container = root / "docker" / A
    container.mkdir(parents=True)
    (container / "memory.current").write_text("52428800\n")
    (container / "memory.stat").write_text("anon 1\ninactive_file 2428800\n")
    (container / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")


def test_every_container_of_a_v1_node_is_read_under_either_driver(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    assert node_usage(tmp_path) == {A: [200000000, 2.5], B: [200000000, 2.5]}


def test_a_v2_node_s_containers_are_read(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    assert node_usage(tmp_path) == {A: [50000000, 1.5]}


def test_a_container_gone_between_the_listing_and_the_read_is_left_out(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    (tmp_path / "memory/docker" / A / "memory.usage_in_bytes").unlink()
    assert list(node_usage(tmp_path)) == [B]
    assert node_usage(tmp_path / "nothing here") == {}


def test_the_report_line_is_what_the_server_parses(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    assert parse_report(report_line(node_usage(tmp_path))) == {
        A: (200000000, 2.5),
        B: (200000000, 2.5),
    }


@pytest.mark.timeout(30)
def test_the_reporter_runs_as_the_guard_runs_it_from_its_source(tmp_path: Path) -> None:
    """``python3 -I -c SOURCE ROOT SECONDS``: standalone (no dynos import), a line each time."""
    v2_tree(tmp_path)
    source = Path(container_cgroups.__file__).read_text()
    command = [sys.executable, "-I", "-c", source, str(tmp_path), "0.05"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd="/") as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(2)]
        finally:
            process.kill()
    assert [parse_report(line.strip()) for line in lines] == [{A: (50000000, 1.5)}] * 2


def test_a_node_with_many_containers_reports_in_lines_the_engine_keeps_whole() -> None:
    usage = {f"{n:064x}": [n, 0.5] for n in range(250)}
    lines = report_lines(usage)
    assert len(lines) == 3 and all(len(line) < 16 * 1024 for line in lines)
    merged: dict[str, tuple[int, float]] = {}
    for line in lines:
        merged.update(parse_report(line))
    assert merged == {c: (int(v[0]), v[1]) for c, v in usage.items()}
    assert report_lines({}) == [report_line({})]  # heard from, with nothing to say
