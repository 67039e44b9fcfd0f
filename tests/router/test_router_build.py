"""The compiled router in a source checkout: a build older than its source is refused."""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from dynos.router import StaleBuildError, refuse_stale_builds


def module_pair(directory: Path, *, source_age: float, build_age: float) -> None:
    source, build = directory / "client.py", directory / f"client{EXTENSION_SUFFIXES[0]}"
    source.write_text("")
    build.write_bytes(b"")
    now = source.stat().st_mtime
    os.utime(source, (now - source_age, now - source_age))
    os.utime(build, (now - build_age, now - build_age))


def test_a_build_newer_than_its_source_is_used(tmp_path: Path) -> None:
    module_pair(tmp_path, source_age=60, build_age=10)
    refuse_stale_builds(tmp_path)


def test_a_source_changed_after_its_build_is_refused_with_the_fix(tmp_path: Path) -> None:
    module_pair(tmp_path, source_age=10, build_age=60)
    with pytest.raises(StaleBuildError, match=r"client\.py changed .* pip install -e \."):
        refuse_stale_builds(tmp_path)


def test_sources_without_builds_are_plain_python(tmp_path: Path) -> None:
    (tmp_path / "client.py").write_text("")
    refuse_stale_builds(tmp_path)
