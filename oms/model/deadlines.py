"""When a clock warns and runs out: wall time, or a calendar's working time (its :class:`Schedule`).

Both instants are computed once, when the clock starts, and stored in UTC
(``warn_at``, ``expires_at``), so the scanner reads plain timestamps whatever the
calendar. A paused clock moves them later by the working time it was paused; a
changed calendar moves the clocks still open under it (:mod:`oms.sla.reschedule`).
Pure arithmetic: the caller looks the schedule up (:func:`oms.store.catalog.schedule`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..settings import get_settings
from ..states import GREEN, YELLOW
from .definitions import Definition, Step
from .worktime import BusinessDays, Schedule

#: The stored deadline of a step without an SLA (a tracked Celery task without ``sla``): never reached, never
#: scanned (its ``sla_check_at`` is ``None``); only its instance's own SLA holds.
NO_DEADLINE = datetime(9999, 1, 1, tzinfo=UTC)


def shown(moment: datetime | None) -> datetime | None:
    """A stored deadline as it is shown and handed out: ``None`` for :data:`NO_DEADLINE` (there is none)."""
    return None if moment == NO_DEADLINE else moment


def clock(owner: Step | Definition, sla: timedelta | BusinessDays, hours: Schedule | None,
          start: datetime) -> tuple[datetime, datetime]:
    """``(warn_at, expires_at)`` of a clock started at ``start`` (at the next opening, under a calendar's ``hours``)."""
    fraction = owner.fraction(get_settings().sla_warn_fraction)
    if hours is None:
        assert isinstance(sla, timedelta), "business days need a calendar (checked when the definition is made)"
        return start + owner.warn_delay(sla, fraction), start + sla
    opened = hours.next_open(start)
    expires = hours.deadline(opened, sla)
    if owner.warn_at is not None:
        return min(hours.add(opened, owner.warn_at), expires), expires
    return hours.add(opened, hours.between(opened, expires) * fraction), expires


#: A timer that has not ended this long after it was due is yellow, then red: the SLA scan is not running.
TIMER_WARN = timedelta(minutes=1)
TIMER_LATE = timedelta(minutes=5)


def wake_at(sleep: timedelta | BusinessDays, hours: Schedule | None, start: datetime) -> datetime:
    """When a timer started at ``start`` ends: ``sleep`` later in wall time, or in its calendar's working time."""
    if hours is None:
        assert isinstance(sleep, timedelta), "business days need a calendar (checked when the definition is made)"
        return start + sleep
    return hours.deadline(hours.next_open(start), sleep)


def step_clock(definition: Definition, index: int, start: datetime,
               hours: Schedule | None) -> tuple[datetime, datetime]:
    """The clock of step ``index`` started at ``start``, in its calendar's ``hours`` (``None``: wall time).

    A timer's clock is its sleep: it turns yellow :data:`TIMER_WARN` and red :data:`TIMER_LATE` after it was due."""
    step = definition.steps[index]
    if step.sleep is not None:
        due = wake_at(step.sleep, hours, start)
        return due + TIMER_WARN, due + TIMER_LATE
    if step.sla is None:
        return NO_DEADLINE, NO_DEADLINE
    return clock(step, step.sla, hours, start)


def workflow_clock(definition: Definition, start: datetime,
                   hours: Schedule | None) -> tuple[datetime, datetime] | None:
    """The clock of the whole instance (the workflow's own ``sla``), if it has one."""
    if definition.sla is None:
        return None
    return clock(definition, definition.sla, hours, start)


def later(hours: Schedule | None, moment: datetime, work: timedelta) -> datetime:
    """``moment`` moved later by ``work`` on a clock: working time under a calendar, else wall time."""
    if work <= timedelta(0):
        return moment
    return moment + work if hours is None else hours.add(moment, work)


def paused_time(hours: Schedule | None, start: datetime, end: datetime) -> timedelta:
    """The time a pause lasted on a step's clock: its calendar's working time, or wall time."""
    return end - start if hours is None else hours.between(start, end)


def cap_at(hours: Schedule | None, paused_at: datetime, left: timedelta) -> datetime:
    """When a pause from ``paused_at`` uses up ``left`` of ``max_pause``, counted as the time paused is (working
    time under a calendar, else wall time)."""
    return later(hours, paused_at, max(left, timedelta(0)))


def next_check(light: str, warn_at: datetime, expires_at: datetime, rung_at: datetime | None = None) -> datetime | None:
    """When the scanner should next look at a row with this light (``None``: red, nothing more can change), or
    at its ladder's next rung (``rung_at``) if that comes first."""
    found = warn_at if light == GREEN else expires_at if light == YELLOW else None
    if rung_at is None:
        return found
    return rung_at if found is None else min(found, rung_at)
