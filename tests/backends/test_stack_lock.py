"""stack:build's lock: a second build of the same cache waits for the first (they would
otherwise remove each other's half-made root filesystem), and says why it waits."""

from __future__ import annotations

import threading
from pathlib import Path

from dynos.backends import stack


def test_a_second_build_of_the_same_cache_waits_for_the_first(tmp_path: Path) -> None:
    said: list[str] = []
    order: list[str] = []

    def second() -> None:
        with stack._alone(tmp_path, said.append):
            order.append("second")

    with stack._alone(tmp_path / ".." / tmp_path.name, print):
        order.append("first")
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # held by the first
        order.append("first done")
    thread.join(10)
    assert not thread.is_alive()
    assert order == ["first", "first done", "second"]
    assert said == ["-----> Waiting for another stack:build of this cache to finish"]


def test_a_build_of_another_cache_does_not_wait(tmp_path: Path) -> None:
    said: list[str] = []
    with stack._alone(tmp_path / "one", print), stack._alone(tmp_path / "two", said.append):
        pass
    assert said == []
