import pytest

from dynos.core.sizes import DEFAULT_SIZE, SIZES, find_size
from dynos.errors import UserError


@pytest.mark.parametrize(
    ("name", "display"),
    [
        ("1X", "Standard-1X"),
        ("standard-1x", "Standard-1X"),
        ("2x", "Standard-2X"),
        ("STANDARD-2X", "Standard-2X"),
        ("px", "PX"),
        ("performance-m", "Performance-M"),
        ("eco", "Eco"),
    ],
)
def test_find_size_accepts_every_alias_in_any_case(name: str, display: str) -> None:
    assert find_size(name).name == display


def test_find_size_rejects_unknown_names_listing_the_known_ones() -> None:
    with pytest.raises(UserError, match="Standard-1X"):
        find_size("huge")


def test_default_size_is_standard_1x_and_may_idle() -> None:
    assert DEFAULT_SIZE.name == "Standard-1X"
    assert DEFAULT_SIZE.memory_mb == 512
    assert DEFAULT_SIZE.may_idle


def test_2x_has_twice_the_memory_and_cpu_of_1x() -> None:
    one, two = find_size("1X"), find_size("2X")
    assert (two.memory_mb, two.cpu_share) == (2 * one.memory_mb, 2 * one.cpu_share)
    assert not two.may_idle


def test_no_alias_names_two_sizes() -> None:
    names = [alias for s in SIZES for alias in {s.id, *s.aliases}]
    assert len(names) == len(set(names))
