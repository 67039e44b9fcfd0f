"""The swarm dynos' usage readings from the guards' reports, and the R15 check's decisions."""

from __future__ import annotations

import json

import pytest

from dynos.core.swarm_usage import (
    REPORT_PREFIX,
    STALE_AFTER,
    UsageReadings,
    check_command,
    check_job_name,
    may_be_memory_kill,
    oom_killed,
    parse_report,
)

A = "a" * 64
B = "b" * 64


def report(said: object) -> str:
    return REPORT_PREFIX + json.dumps(said)


@pytest.mark.parametrize(
    "line",
    [
        "dynos guard: rules missing or changed: loaded again",
        REPORT_PREFIX + "{torn",
        REPORT_PREFIX + "[1, 2]",
        REPORT_PREFIX + '{"../etc": [1, 2]}',
        report({A: [1]}),
        report({A: ["1", 2]}),
        report({A: {"memory": 1}}),
        report({A: [float("nan"), 1]}),
        report({A: [1, float("inf")]}),
        report({A: [True, 1]}),
    ],
)
def test_what_is_no_well_formed_report_is_no_reading(line: str) -> None:
    assert parse_report(line) == {}


def test_a_report_gives_each_container_s_memory_and_cpu_seconds() -> None:
    line = report({A: [104857600, 3.25], B: [0, 0]})
    assert parse_report(line) == {A: (104857600, 3.25), B: (0, 0.0)}


def test_a_reading_counts_until_it_is_stale_and_newer_ones_replace_it() -> None:
    readings = UsageReadings()
    readings.take(report({A: [100, 1.0]}), now=10.0)
    readings.take(report({A: [200, 2.0]}), now=12.0)
    reading = readings.of(A, 12.0 + STALE_AFTER)
    assert reading is not None and (reading.memory, reading.cpu_seconds) == (200, 2.0)
    assert readings.of(A, 12.0 + STALE_AFTER + 0.1) is None  # its node stopped reporting
    assert readings.of(B, 12.0) is None


def test_readings_of_containers_long_gone_are_forgotten() -> None:
    readings = UsageReadings()
    for n in range(100):
        assert readings.take(report({f"{n:064x}": [1, 0]}), now=float(n))
    assert len(readings.readings) <= 64 and f"{0:064x}" not in readings.readings
    assert readings.of(f"{99:064x}", 99.0) is not None


def test_only_report_lines_count_as_heard_from_the_guards() -> None:
    readings = UsageReadings()
    assert readings.take(report({}), 1.0)  # a node without containers reports too
    assert not readings.take("dynos guard: rules missing or changed: loaded again", 1.0)


def test_only_a_kill_nobody_asked_for_is_asked_about() -> None:
    assert may_be_memory_kill(137, stopping=False)
    assert not may_be_memory_kill(137, stopping=True)  # a stop's SIGKILL: R12's
    assert not may_be_memory_kill(1, stopping=False)
    assert not may_be_memory_kill(0, stopping=False)


def test_the_engine_s_inspection_says_whether_the_kernel_killed_it() -> None:
    assert oom_killed({"State": {"OOMKilled": True, "ExitCode": 137}})
    assert not oom_killed({"State": {"OOMKilled": False, "ExitCode": 137}})
    assert not oom_killed({})


def test_the_check_job_takes_a_container_id_only() -> None:
    command = check_command("c" * 64, "/docker.sock")
    assert command[:3] == ["python3", "-I", "-c"] and command[-2:] == ["c" * 64, "/docker.sock"]
    with pytest.raises(ValueError):
        check_command("../../containers/x", "/docker.sock")
    assert len(check_job_name("s" * 40, "t" * 40)) <= 63
