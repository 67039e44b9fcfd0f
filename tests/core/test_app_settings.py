import pytest

from dynos.core.app_settings import parse_setting
from dynos.errors import UserError


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("idle_after", "600", 600),
        ("idle_after", 0, 0),
        ("request_timeout", "45s", 45.0),
        ("health_check_path", "/health", "/health"),
        ("idle_after", None, None),
    ],
)
def test_parse_setting_accepts_numbers_text_and_none(
    name: str, value: object, stored: object
) -> None:
    assert parse_setting(name, value) == stored


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("idle_after", "soon"),
        ("idle_after", -1),
        ("idle_after", "inf"),
        ("idle_after", "nan"),
        ("idle_after", float("inf")),  # JSON's 1e999
        ("idle_after", float("nan")),
        ("idle_after", 10**400),  # past a float's range
        ("request_timeout", "nan"),
        ("request_timeout", 0),
        ("request_timeout", True),
        ("health_check_path", "health"),
        ("colour", "blue"),
    ],
)
def test_parse_setting_rejects_bad_values_and_unknown_names(name: str, value: object) -> None:
    with pytest.raises(UserError):
        parse_setting(name, value)
