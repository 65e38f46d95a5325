"""Calendars: the working hours, time zone and holidays by which an agency counts its SLAs.

``Calendar(id="epa_business", timezone="America/New_York", hours={"mon-fri": "08:30-17:00"},
holidays="US", closed=["2026-12-24"]).save()`` stores one; a workflow or a step that
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
import time
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as public_holidays
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..exceptions import InvalidArgument, InvalidDefinition, UnknownCalendar, describe
from .files import read_definition
from .names import check_name
from .worktime import Schedule, minutes

#: Seconds a process keeps a calendar it read before reading it again (another process may change it).
CACHE_SECONDS = 10.0

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


class Calendar(BaseModel):
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
    def from_file(cls, path: str | Path) -> Calendar:
        """Load a calendar from a ``.yaml``/``.yml`` or ``.json`` file."""
        return cls(**read_definition(Path(path), "'id', 'timezone' and 'hours'"))

    # -- storage ----------------------------------------------------------------

    def save(self) -> int:
        """Store this calendar (replacing one with its id); return how many open steps were rescheduled.

        When the calendar changed, the deadlines of the steps and instances still open
        under it are computed again from when their clocks started.
        """
        from ..store.db import transaction
        from ..store.tables import CalendarRow

        digest = self.digest()
        with transaction() as session:
            row = session.get(CalendarRow, self.id, with_for_update=True)
            if row is not None and row.digest == digest:
                return 0
            if row is None:
                session.add(CalendarRow(id=self.id, spec=self.spec(), digest=digest, updated_at=datetime.now(UTC)))
            else:
                row.spec, row.digest, row.updated_at = self.spec(), digest, datetime.now(UTC)
        forget(self.id)
        if row is None:
            return 0
        from .deadlines import reschedule

        return reschedule(self.id)

    @classmethod
    def load(cls, calendar_id: str) -> Calendar:
        """The stored calendar. Raises :class:`~oms.exceptions.UnknownCalendar`.

        Read in a statement of its own, outside any transaction: rows are built (and
        their deadlines computed) inside transitions, where SQLite's one writer holds
        the lock, and a reader must not wait for it.
        """
        from sqlalchemy import select

        from ..store.db import database
        from ..store.tables import CalendarRow

        with database().autocommit.connect() as conn:
            spec = conn.scalar(select(CalendarRow.spec).where(CalendarRow.id == check_calendar_id(calendar_id)))
        if spec is None:
            raise UnknownCalendar(calendar_id)
        return cls(**spec)


def check_calendar_id(value: object) -> str:
    """A calendar id argument, or :class:`~oms.exceptions.InvalidArgument` (not a database error)."""
    try:
        return check_name(value, "calendar id")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def list_calendars() -> list[Calendar]:
    """Every stored calendar, by id."""
    from sqlalchemy import select

    from ..store.db import transaction
    from ..store.tables import CalendarRow

    with transaction() as session:
        return [Calendar(**row.spec) for row in session.scalars(select(CalendarRow).order_by(CalendarRow.id))]


_cache: dict[tuple[str, str], tuple[float, Schedule]] = {}


def schedule(calendar_id: str) -> Schedule:
    """The named calendar's arithmetic, read from the database at most every :data:`CACHE_SECONDS`."""
    from ..settings import get_settings

    key = (get_settings().database_url, calendar_id)
    found = _cache.get(key)
    if found is None or found[0] < time.monotonic():
        found = (time.monotonic() + CACHE_SECONDS, Calendar.load(calendar_id).schedule())
        _cache[key] = found
    return found[1]


def forget(calendar_id: str | None = None) -> None:
    """Drop cached calendars (one, or all): they are read again on next use."""
    for key in [k for k in _cache if calendar_id is None or k[1] == calendar_id]:
        del _cache[key]


def known(calendar_ids: set[str], database_url: str | None = None) -> set[str]:
    """Which of these calendars are stored."""
    from sqlalchemy import select

    from ..store.db import transaction
    from ..store.tables import CalendarRow

    if not calendar_ids:
        return set()
    with transaction(database_url) as session:
        return set(session.scalars(select(CalendarRow.id).where(CalendarRow.id.in_(calendar_ids))))

