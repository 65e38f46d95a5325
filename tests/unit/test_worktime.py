"""Working-time arithmetic and calendar validation, with the clock passed in (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from oms import Calendar, InvalidDefinition, Workflow
from oms.model.worktime import BusinessDays, parse_sla

NY = ZoneInfo("America/New_York")
H = timedelta(hours=1)


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A New York wall-clock time as a UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=NY).astimezone(UTC)


FEDERAL = Calendar(id="us_federal", timezone="America/New_York", hours={"mon-fri": "09:00-17:00"}, holidays="US")
OFFICE = Calendar(id="office", timezone="America/New_York", hours={"mon-fri": "08:30-17:00"})
ALWAYS = Calendar(id="always", timezone="America/New_York", hours={"mon-sun": "00:00-24:00"})


def test_two_business_days_skip_a_holiday_and_a_weekend() -> None:
    # Wednesday before Thanksgiving (Thursday 26 November 2026, a US federal holiday), 10:00
    deadline = FEDERAL.schedule().deadline(ny(2026, 11, 25, 10), BusinessDays(2))
    assert deadline == ny(2026, 11, 30, 10)  # Friday is the first business day, Monday the second


def test_working_hours_carry_over_the_weekend() -> None:
    hours = OFFICE.schedule()
    assert hours.deadline(ny(2026, 11, 20, 15), 4 * H) == ny(2026, 11, 23, 10, 30)  # Fri 2 h, Mon 2 h
    assert hours.between(ny(2026, 11, 20, 15), ny(2026, 11, 23, 10, 30)) == 4 * H


def test_a_clock_started_outside_working_hours_starts_at_the_next_opening() -> None:
    hours = OFFICE.schedule()
    assert hours.next_open(ny(2026, 11, 21, 12)) == ny(2026, 11, 23, 8, 30)  # Saturday noon -> Monday 08:30
    assert hours.deadline(ny(2026, 11, 21, 12), H) == ny(2026, 11, 23, 9, 30)
    assert hours.deadline(ny(2026, 11, 23, 7), H) == ny(2026, 11, 23, 9, 30)  # Monday before opening
    assert hours.deadline(ny(2026, 11, 23, 18), H) == ny(2026, 11, 24, 9, 30)  # Monday after closing


def test_a_holiday_between_start_and_deadline_is_skipped() -> None:
    hours = FEDERAL.schedule()
    assert hours.deadline(ny(2026, 11, 25, 9), 16 * H) == ny(2026, 11, 27, 17)  # Wed 8 h, Thu closed, Fri 8 h
    closed = Calendar(id="c", timezone="America/New_York", hours={"mon-fri": "09:00-17:00"}, closed=["2026-12-24"])
    assert closed.schedule().deadline(ny(2026, 12, 23, 9), 16 * H) == ny(2026, 12, 25, 17)


def test_spring_forward_counts_the_hours_that_really_pass() -> None:
    hours = ALWAYS.schedule()
    start = ny(2026, 3, 7, 12)  # the clocks skip 02:00-03:00 on Sunday 8 March
    end = hours.deadline(start, 24 * H)
    assert end - start == 24 * H
    assert end.astimezone(NY).hour == 13  # a day's wall clock, plus the skipped hour
    assert hours.between(ny(2026, 3, 8, 0), ny(2026, 3, 9, 0)) == 23 * H


def test_fall_back_counts_the_repeated_hour_once_for_each_time_it_passes() -> None:
    hours = ALWAYS.schedule()
    assert hours.between(ny(2026, 10, 31, 0), ny(2026, 11, 2, 0)) == 49 * H  # Sunday 1 November has 25 hours
    night = Calendar(id="night", timezone="America/New_York", hours={"sun": "00:30-03:00"}).schedule()
    # 00:30 EDT (04:30 UTC) to 03:00 EST (08:00 UTC): 3.5 hours really pass, the 01:00 hour twice
    assert night.between(ny(2026, 11, 1, 0), ny(2026, 11, 2, 0)) == timedelta(hours=3, minutes=30)
    assert night.deadline(ny(2026, 11, 1, 0), 3 * H) == datetime(2026, 11, 1, 7, 30, tzinfo=UTC)


def test_business_days_keep_the_local_time_of_day_across_a_clock_change() -> None:
    # Friday 30 October 10:00 EDT + 1 business day = Monday 2 November 10:00 EST (one more hour of UTC)
    assert ALWAYS.schedule().deadline(ny(2026, 10, 30, 10), BusinessDays(1)) == ny(2026, 10, 31, 10)
    assert FEDERAL.schedule().deadline(ny(2026, 10, 30, 10), BusinessDays(1)) == ny(2026, 11, 2, 10)
    assert ny(2026, 11, 2, 10) - ny(2026, 10, 30, 10) == 72 * H + H


@pytest.mark.parametrize(("spec", "message"), [
    ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"holidays": "XX"}, "unknown holidays country or subdivision: 'XX'"),
    ({"holidays": "US", "subdivision": "ZZ"}, "'US' with subdivision 'ZZ'"),
    ({"hours": {"mon-fri": "17:00-09:00"}}, "hours '17:00-09:00' end before they start"),
    ({"hours": {"mon-fri": "09:00-13:00", "wed": "12:00-15:00"}}, "hours overlap on wed: 09:00-13:00 and 12:00-15:00"),
    ({"hours": {"mon-fri": "9-5"}}, "not a time of day: '9'"),
    ({"hours": {"funday": "09:00-17:00"}}, "'funday' is not a day"),
    ({"hours": {}}, "hours"),
    ({"id": "a b"}, "calendar id 'a b' cannot be a queue name"),
])
def test_invalid_calendars_name_the_culprit(spec: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"id": "c", "timezone": "America/New_York", "hours": {"mon-fri": "09:00-17:00"}}
    with pytest.raises(InvalidDefinition, match="invalid calendar") as caught:
        Calendar(**{**base, **spec})
    assert message in str(caught.value)


def test_a_calendar_closed_every_day_has_no_working_time() -> None:
    every_day = [f"2026-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)]
    closed = Calendar(id="c", timezone="UTC", hours={"mon": "09:00-10:00"}, closed=every_day[:3])
    assert closed.schedule().next_open(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_business_days_need_a_calendar_and_are_bounded() -> None:
    with pytest.raises(InvalidDefinition, match=r"steps\[0\]\.sla: 2bd counts business days: name the calendar"):
        Workflow(id="w", steps=[{"id": "assign_inspector", "sla": "2bd"}])
    with pytest.raises(InvalidDefinition, match="sla: 1bd counts business days"):
        Workflow(id="w", sla="1bd", steps=[{"id": "a", "sla": "5m"}])
    with pytest.raises(ValueError, match="more than 261 business days"):
        parse_sla("1000bd")
    ok = Workflow(id="w", calendar="us_federal", steps=[{"id": "a", "sla": "2bd"}, {"id": "b", "sla": "4h"}])
    assert ok.spec()["steps"][0]["sla"] == "2bd"
    assert ok.calendar_of(1) == "us_federal"
