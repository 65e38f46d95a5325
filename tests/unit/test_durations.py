from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("48h", 172800), ("2d", 172800), ("1h30m", 5400), ("PT5M", 300),
     ("P1DT2H", 93600), ("500ms", 0.5), ("1.5h", 5400), (90, 90), (" 2M ", 120)],
)
def test_parses_the_forms_people_write(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1h 30m", "five minutes", "PTXM", True])
def test_refuses_what_is_not_a_duration_and_names_it(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=365 * 86400))
def test_format_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("value", ["1000000000d", "3000000d", "366d", "8761h", float("inf"), float("nan"), 1e300,
                                   10**400, -1e300, timedelta(days=999_999_999)])
def test_durations_over_a_year_are_refused_by_name(value: object) -> None:
    """Regression (issue 12, 4.5): they overflowed ("date value out of range") where they were used."""
    with pytest.raises(ValueError, match=r"out of range: at most 365d"):
        parse_duration(value)  # type: ignore[arg-type]
    assert parse_duration("365d") == timedelta(days=365)
