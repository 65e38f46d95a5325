"""Calendars: the working hours, time zone and holidays by which an agency counts its SLAs.

``Calendar(id="epa_business", timezone="America/New_York", hours={"mon-fri": "08:30-17:00"},
holidays="US", closed=["2026-12-24"]).save()`` stores one (:class:`oms.Calendar`, this
data with its storage); a workflow or a step that
names it (``calendar: epa_business``) counts its SLA durations in working time
(``"4h"``: four working hours; ``"2bd"``: two business days). Public holidays come
from the ``holidays`` package, by country and optional subdivision.

Deadlines are stored as UTC instants when a step is queued, so the scanner's cost
is the same with calendars as without. Saving a changed calendar recomputes the
deadlines of the steps still open under it, a thousand rows per transaction.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as public_holidays
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..exceptions import InvalidArgument, InvalidDefinition, describe
from .files import read_definition
from .names import check_name
from .worktime import Schedule, minutes

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(spec: str) -> list[int]:
    """``"mon-fri"``, ``"sat"``, ``"mon,wed"`` as weekday numbers (0 Monday)."""
    found: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"{spec!r} is not a day or a range of days (use e.g. 'mon-fri', 'sat', 'mon,wed')")
        begin, end = _DAYS.index(first), _DAYS.index(last or first)
        found += list(range(begin, end + 1)) if begin <= end else [*range(begin, 7), *range(0, end + 1)]
    return found


def _ranges(value: str | list[str]) -> list[tuple[int, int]]:
    """``"08:30-12:00,13:00-17:00"`` (or a list of such) as minute ranges."""
    texts = value if isinstance(value, list) else str(value).split(",")
    ranges = []
    for text in texts:
        start, sep, end = str(text).partition("-")
        if not sep:
            raise ValueError(f"{text!r} is not a range of hours (use e.g. '08:30-17:00')")
        low, high = minutes(start), minutes(end)
        if low >= high:
            raise ValueError(f"hours {text.strip()!r} end before they start")
        ranges.append((low, high))
    return ranges


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


class CalendarDefinition(BaseModel):
    """When an agency works: opening hours per weekday in a time zone, less public holidays and closed days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    #: An IANA time zone: ``"America/New_York"``.
    timezone: str
    #: Opening hours by day or range of days: ``{"mon-fri": "08:30-17:00", "sat": "09:00-12:00"}``; a day
    #: may have several ranges (``"08:30-12:00,13:00-17:00"``). Days not listed are closed.
    hours: dict[str, str | list[str]] = Field(min_length=1)
    #: Public holidays of this country (ISO code, ``"US"``), from the ``holidays`` package…
    holidays: str | None = None
    #: …and of this subdivision of it (``"CA"``, ``"NY"``).
    subdivision: str | None = None
    #: More days closed: ``["2026-12-24"]``.
    closed: list[date] = Field(default_factory=list)
    description: str = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidDefinition(f"invalid calendar {data.get('id', '?')!r}: {describe(exc)}") from None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: object) -> str:
        return check_name(value, "calendar id")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'America/New_York')") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.subdivision and not self.holidays:
            raise ValueError("a subdivision needs the country it belongs to (holidays: 'US')")
        if self.holidays:
            try:
                public_holidays.country_holidays(self.holidays, subdiv=self.subdivision)
            except NotImplementedError:
                where = f"{self.holidays!r}" + (f" with subdivision {self.subdivision!r}" if self.subdivision else "")
                raise ValueError(f"unknown holidays country or subdivision: {where}") from None
        weekly = self.weekly()
        if not any(weekly):
            raise ValueError("no working time at all: give at least one day some hours")
        return self

    def weekly(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """The opening hours of each weekday (0 Monday), sorted; ``ValueError`` if two overlap."""
        days: list[list[tuple[int, int]]] = [[] for _ in _DAYS]
        for spec, value in self.hours.items():
            try:
                ranges = _ranges(value)
            except ValueError as exc:
                raise ValueError(f"hours[{spec!r}]: {exc}") from None
            for day in _weekdays(spec):
                days[day].extend(ranges)
        for number, ranges in enumerate(days):
            ranges.sort()
            for (a, b), (c, d) in pairwise(ranges):
                if c < b:
                    raise ValueError(f"hours overlap on {_DAYS[number]}: {_clock(a)}-{_clock(b)} and "
                                     f"{_clock(c)}-{_clock(d)}")
        return tuple(tuple(ranges) for ranges in days)

    def schedule(self) -> Schedule:
        """The working-time arithmetic of this calendar."""
        closed = set(self.closed)
        public = public_holidays.country_holidays(self.holidays, subdiv=self.subdivision) if self.holidays else None

        def is_closed(day: date) -> bool:
            return day in closed or (public is not None and day in public)

        return Schedule(ZoneInfo(self.timezone), self.weekly(), is_closed)

    # -- (de)serialisation ----------------------------------------------------

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Load a calendar from a ``.yaml``/``.yml`` or ``.json`` file."""
        return cls(**read_definition(Path(path), "'id', 'timezone' and 'hours'"))


def check_calendar_id(value: object) -> str:
    """A calendar id argument, or :class:`~oms.exceptions.InvalidArgument` (not a database error)."""
    try:
        return check_name(value, "calendar id")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
