"""When a clock warns and runs out: wall time, or a calendar's working time.

Both instants are computed once, when the clock starts, and stored in UTC
(``warn_at``, ``expires_at``), so the scanner reads plain timestamps whatever the
calendar. A paused clock moves them later by the working time it was paused; a
changed calendar moves the clocks still open under it (:func:`reschedule`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from ..settings import get_settings
from ..states import GREEN, YELLOW
from .calendars import schedule
from .definitions import Step, Workflow
from .worktime import BusinessDays, Schedule

logger = logging.getLogger(__name__)

#: Open rows moved per transaction when a calendar changes.
RESCHEDULE_BATCH = 1000


def clock(owner: Step | Workflow, sla: timedelta | BusinessDays, calendar: str | None,
          start: datetime) -> tuple[datetime, datetime]:
    """``(warn_at, expires_at)`` of a clock started at ``start`` (at the next opening, under a calendar)."""
    fraction = owner.fraction(get_settings().sla_warn_fraction)
    if calendar is None:
        assert isinstance(sla, timedelta), "business days need a calendar (checked when the definition is made)"
        return start + owner.warn_delay(sla, fraction), start + sla
    hours = schedule(calendar)
    opened = hours.next_open(start)
    expires = hours.deadline(opened, sla)
    if owner.warn_at is not None:
        return min(hours.add(opened, owner.warn_at), expires), expires
    return hours.add(opened, hours.between(opened, expires) * fraction), expires


def step_clock(definition: Workflow, index: int, start: datetime) -> tuple[datetime, datetime]:
    step = definition.steps[index]
    return clock(step, step.sla, definition.calendar_of(index), start)


def workflow_clock(definition: Workflow, start: datetime) -> tuple[datetime, datetime] | None:
    if definition.sla is None:
        return None
    return clock(definition, definition.sla, definition.calendar, start)


def later(hours: Schedule | None, moment: datetime, work: timedelta) -> datetime:
    """``moment`` moved later by ``work`` on a clock: working time under a calendar, else wall time."""
    if work <= timedelta(0):
        return moment
    return moment + work if hours is None else hours.add(moment, work)


def calendar_schedule(calendar: str | None) -> Schedule | None:
    return None if calendar is None else schedule(calendar)


def reschedule(calendar_id: str, now: datetime | None = None) -> int:
    """Compute again the clocks of the open steps and instances counted in ``calendar_id``; return how many.

    A clock restarts from when it started (the row's ``ready_at``/``created_at``) plus
    the time it has been paused; a light already yellow or red stays (a light only gets
    worse), and the scanner's next look follows the new instants. Batches of
    :data:`RESCHEDULE_BATCH` rows, one transaction each, in id order.
    """
    from ..states import OPEN_TASK, InstanceStatus
    from ..store.db import transaction
    from ..store.tables import InstanceRow, TaskRow
    from .definitions import load_definition

    moved, after = 0, ""
    open_tasks = [status.value for status in OPEN_TASK]
    while True:
        with transaction() as session:
            tasks = session.execute(
                select(TaskRow, InstanceRow.version).join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
                .where(TaskRow.calendar_id == calendar_id, TaskRow.status.in_(open_tasks), TaskRow.id > after)
                .order_by(TaskRow.id).limit(RESCHEDULE_BATCH).with_for_update(of=TaskRow)
            ).all()
            for task, version in tasks:
                definition, _ = load_definition(session, task.workflow_id, version)
                warn_at, expires_at = step_clock(definition, task.step_index, task.ready_at)
                paused = timedelta(seconds=task.paused_s or 0.0)  # on the step's clock
                task.warn_at = later(schedule(calendar_id), warn_at, paused)
                task.expires_at = later(schedule(calendar_id), expires_at, paused)
                if task.paused_at is None:
                    task.sla_check_at = next_check(task.light, task.warn_at, task.expires_at)
            moved += len(tasks)
            if len(tasks) < RESCHEDULE_BATCH:
                break
            after = tasks[-1][0].id
    after = ""
    while True:
        with transaction() as session:
            instances = session.scalars(
                select(InstanceRow).where(InstanceRow.calendar_id == calendar_id, InstanceRow.id > after,
                                          InstanceRow.status == InstanceStatus.RUNNING.value)
                .order_by(InstanceRow.id).limit(RESCHEDULE_BATCH).with_for_update()
            ).all()
            for instance in instances:
                definition, _ = load_definition(session, instance.workflow_id, instance.version)
                found = workflow_clock(definition, instance.created_at)
                if found is not None:
                    instance.warn_at, instance.expires_at = found
                    instance.sla_check_at = next_check(instance.light, *found)
            moved += len(instances)
            if len(instances) < RESCHEDULE_BATCH:
                break
            after = instances[-1].id
    if moved:
        logger.info("calendar %s changed: %d open clocks computed again", calendar_id, moved)
    return moved


def next_check(light: str, warn_at: datetime, expires_at: datetime) -> datetime | None:
    """When the scanner should next look at a row with this light (``None``: red, nothing more can change)."""
    if light == GREEN:
        return warn_at
    return expires_at if light == YELLOW else None
