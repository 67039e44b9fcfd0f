import pytest

from dynos.core.scale import (
    FormationEntry,
    apply_changes,
    format_formation,
    memory_warning,
    parse_quantity,
    parse_scale_arg,
)
from dynos.core.sizes import find_size
from dynos.errors import NotFound, UserError

ONE_X = find_size("1X")
TWO_X = find_size("2X")
CURRENT = {
    "web": FormationEntry("web", 2, ONE_X),
    "worker": FormationEntry("worker", 1, ONE_X),
}


@pytest.mark.parametrize(
    ("arg", "op", "amount", "size"),
    [
        ("web=3", "=", 3, None),
        ("web+1", "+", 1, None),
        ("worker-2", "-", 2, None),
        ("web=2:2X", "=", 2, TWO_X),
        ("web=1:standard-2x", "=", 1, TWO_X),
        ("web=Standard-2X", None, 0, TWO_X),
    ],
)
def test_parse_scale_arg_reads_quantity_and_size(
    arg: str, op: str | None, amount: int, size: object
) -> None:
    change = parse_scale_arg(arg)
    assert (change.op, change.amount, change.size) == (op, amount, size)


@pytest.mark.parametrize(
    "arg",
    # "\u00b2" (a superscript two) passes str.isdigit() but not int(); "\u0663" is an
    # Arabic-Indic three, which "\d" matches: quantities are ASCII digits.
    ["web=two", "web=-1", "web", "=2", "web=2:huge", "web=1.5", "web=\u00b2", "web+\u0663"],
)
def test_parse_scale_arg_rejects_bad_arguments(arg: str) -> None:
    with pytest.raises(UserError):
        parse_scale_arg(arg)


def test_apply_changes_adds_and_removes_relative_to_current() -> None:
    result = apply_changes(CURRENT, [parse_scale_arg("web+2"), parse_scale_arg("worker-1")])
    assert result == {
        "web": FormationEntry("web", 4, ONE_X),
        "worker": FormationEntry("worker", 0, ONE_X),
    }


def test_apply_changes_keeps_size_unless_given() -> None:
    assert apply_changes(CURRENT, [parse_scale_arg("web=2:2X")])["web"].size == TWO_X
    assert apply_changes(CURRENT, [parse_scale_arg("web=5")])["web"].size == ONE_X


def test_apply_changes_refuses_to_go_below_zero() -> None:
    with pytest.raises(UserError, match="Cannot scale worker to -1"):
        apply_changes(CURRENT, [parse_scale_arg("worker-2")])


def test_apply_changes_refuses_unknown_process_types() -> None:
    with pytest.raises(NotFound, match="clock"):
        apply_changes(CURRENT, [parse_scale_arg("clock=1")])


def test_apply_changes_says_the_release_phase_is_not_scaled() -> None:
    with pytest.raises(UserError, match="release is the release phase's command") as raised:
        apply_changes(CURRENT, [parse_scale_arg("release=1")])
    assert not isinstance(raised.value, NotFound)


def test_parse_quantity_accepts_numbers_and_heroku_strings() -> None:
    assert parse_quantity("web", 2) == ("=", 2)
    assert parse_quantity("web", "+1") == ("+", 1)
    assert parse_quantity("web", "-3") == ("-", 3)
    assert parse_quantity("web", "4") == ("=", 4)


@pytest.mark.parametrize("value", ["two", -1, True, 1.5, None, "", "\u00b2", "\u0663", "2\n2"])
def test_parse_quantity_rejects_non_quantities(value: object) -> None:
    with pytest.raises(UserError):
        parse_quantity("web", value)


def test_format_formation_prints_heroku_style() -> None:
    assert format_formation(CURRENT.values()) == "web=2:Standard-1X worker=1:Standard-1X"


def test_a_formation_that_needs_more_memory_than_the_host_has_gets_a_warning() -> None:
    px = find_size("PX")  # 6 GB
    host = 23 * 1024**3
    assert memory_warning([FormationEntry("web", 3, px)], host) is None  # 18 GB
    warning = memory_warning([FormationEntry("web", 3, px), FormationEntry("w", 1, px)], host)
    assert warning is not None
    assert "may use 24.0 GB of memory" in warning
    assert "more than this host has (23.0 GB)" in warning
    assert memory_warning([FormationEntry("web", 0, px)], 0) is None
