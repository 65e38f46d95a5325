"""Working time: business days, and a week of opening hours with holidays, counted across time zones.

A :class:`Schedule` is the arithmetic of a calendar (:mod:`oms.calendars`): its
time zone, its opening hours per weekday, and the days it is closed. Every
instant is an aware UTC ``datetime``; working intervals are built from local
wall-clock times and converted with :mod:`zoneinfo`, so a day on which the clocks
change counts the hours that really pass (23 or 25 for a day open round the clock).
A time that does not exist (skipped in spring) or exists twice (repeated in the
autumn) is taken at its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from ..durations import format_duration, parse_duration

#: How far ahead a deadline may be looked for: a schedule open less than this is refused.
HORIZON_DAYS = 3660

#: The longest SLA in business days (a year of them).
MAX_BUSINESS_DAYS = 261

_BUSINESS_DAYS = re.compile(r"^\s*(\d+)\s*bd\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BusinessDays:
    """``"2bd"``: the same time of day, that many working days later, in the calendar's time zone."""

    days: int

    def __str__(self) -> str:
        return f"{self.days}bd"


def parse_sla(value: Any) -> timedelta | BusinessDays:
    """A positive SLA: a duration (``"4h"``, working time under a calendar) or business days (``"2bd"``)."""
    if isinstance(value, (timedelta, BusinessDays)):
        parsed: timedelta | BusinessDays = value
    elif isinstance(value, str) and (found := _BUSINESS_DAYS.match(value)):
        parsed = BusinessDays(int(found.group(1)))
    else:
        parsed = parse_duration(value)
    if (parsed.days <= 0) if isinstance(parsed, BusinessDays) else (parsed <= timedelta(0)):
        raise ValueError(f"duration must be positive, got {value!r}")
    if isinstance(parsed, BusinessDays) and parsed.days > MAX_BUSINESS_DAYS:
        raise ValueError(f"{value!r} is more than {MAX_BUSINESS_DAYS} business days")
    return parsed


def format_sla(value: timedelta | BusinessDays) -> str:
    return str(value) if isinstance(value, BusinessDays) else format_duration(value)


#: An SLA field: a positive duration, or business days (``"2bd"``, which needs a calendar).
Sla = Annotated[
    timedelta | BusinessDays,
    PlainValidator(parse_sla),
    PlainSerializer(format_sla, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["5m", "48h", "2bd"]}),
]


def minutes(text: str) -> int:
    """``"08:30"`` as minutes after midnight (``"24:00"`` is the end of the day)."""
    found = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not found or int(found.group(2)) > 59 or int(found.group(1)) > 24 or (
            int(found.group(1)) == 24 and int(found.group(2))):
        raise ValueError(f"not a time of day: {text!r} (use HH:MM, 00:00 to 24:00)")
    return int(found.group(1)) * 60 + int(found.group(2))


@dataclass(frozen=True)
class Schedule:
    """Opening hours per weekday (0 Monday), in minutes after local midnight, and the days closed."""

    zone: ZoneInfo
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    closed: Callable[[date], bool]

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working intervals of a local date, as UTC instants (none on a closed day)."""
        if self.closed(day):
            return []
        found = []
        for start, end in self.weekly[day.weekday()]:
            found.append((self._instant(day, start), self._instant(day, end)))
        return found

    def _instant(self, day: date, minute: int) -> datetime:
        local = datetime.combine(day + timedelta(days=minute // 1440), time(minute % 1440 // 60, minute % 60))
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def _days(self, moment: datetime) -> Any:
        """Local dates from the day before ``moment``'s (an interval may reach past midnight UTC) onward."""
        first = moment.astimezone(self.zone).date() - timedelta(days=1)
        for offset in range(HORIZON_DAYS):
            yield first + timedelta(days=offset)
        raise ValueError(f"no working time in the {HORIZON_DAYS} days after {moment.isoformat()}")

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` if working time runs then, else the next opening."""
        for day in self._days(moment):
            for start, end in self.intervals(day):
                if end > moment:
                    return max(start, moment)
        raise AssertionError("unreachable")  # pragma: no cover - _days raises first

    def add(self, start: datetime, work: timedelta) -> datetime:
        """The instant when ``work`` of working time has passed since ``start``."""
        remaining = work
        moment = self.next_open(start)
        if remaining <= timedelta(0):
            return moment
        for day in self._days(moment):
            for opens, end in self.intervals(day):
                if end <= moment:
                    continue
                begin = max(opens, moment)
                if end - begin >= remaining:
                    return begin + remaining
                remaining -= end - begin
        raise AssertionError("unreachable")  # pragma: no cover

    def between(self, start: datetime, end: datetime) -> timedelta:
        """The working time in ``[start, end)``."""
        total = timedelta(0)
        if end <= start:
            return total
        for day in self._days(start):
            if self._instant(day, 0) >= end:
                return total
            for begin, finish in self.intervals(day):
                overlap = min(finish, end) - max(begin, start)
                if overlap > timedelta(0):
                    total += overlap
        return total  # pragma: no cover - the loop returns once past ``end``

    def add_days(self, start: datetime, days: int) -> datetime:
        """``days`` business days after ``start`` (from the next opening if it is closed then): the same local
        time of day on that working day, kept within its opening hours."""
        opened = self.next_open(start)
        local = opened.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        day, left = local.date(), days
        for _ in range(HORIZON_DAYS):
            day += timedelta(days=1)
            hours = self.intervals(day)
            if hours:
                left -= 1
                if left == 0:
                    wanted = self._instant(day, minute) + timedelta(seconds=local.second,
                                                                    microseconds=local.microsecond)
                    return min(max(wanted, hours[0][0]), hours[-1][1])
        raise ValueError(f"no {days} working days in the {HORIZON_DAYS} days after {start.isoformat()}")

    def deadline(self, start: datetime, sla: timedelta | BusinessDays) -> datetime:
        """When an SLA started at ``start`` runs out, counting working time only."""
        if isinstance(sla, BusinessDays):
            return self.add_days(start, sla.days)
        return self.add(start, sla)
