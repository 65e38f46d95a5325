"""A calendar changed: the clocks still open under it are computed again.

A clock restarts from when it started (the row's ``ready_at``/``created_at``) plus
the time it has been paused; a light already yellow or red stays (a light only gets
worse), and the scanner's next look follows the new instants: the light's next change
or the ladder's next rung, which is computed from the new deadline (a rung fired stays
fired).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from ..engine.rungs import instance_check, task_check
from ..model.deadlines import later, step_clock, workflow_clock
from ..states import OPEN_TASK, InstanceStatus
from ..store.catalog import load_definition, schedule
from ..store.db import transaction
from ..store.tables import InstanceRow, TaskRow

logger = logging.getLogger(__name__)

#: Open rows moved per transaction when a calendar changes.
BATCH = 1000


def reschedule(calendar_id: str) -> int:
    """Compute again the clocks of the open steps and instances counted in ``calendar_id``; return how many.

    Batches of :data:`BATCH` rows, one transaction each, in id order.
    """
    moved, after = 0, ""
    hours = schedule(calendar_id)
    while True:
        with transaction() as session:
            tasks = session.execute(
                select(TaskRow, InstanceRow.version).join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
                .where(TaskRow.calendar_id == calendar_id, TaskRow.status.in_(OPEN_TASK), TaskRow.id > after)
                .order_by(TaskRow.id).limit(BATCH).with_for_update(of=TaskRow)
            ).all()
            for task, version in tasks:
                definition, _ = load_definition(session, task.workflow_id, version)
                warn_at, expires_at = step_clock(definition, task.step_index, task.ready_at, hours)
                paused = timedelta(seconds=task.paused_s or 0.0)  # on the step's clock
                task.warn_at = later(hours, warn_at, paused)
                task.expires_at = later(hours, expires_at, paused)
                if task.paused_at is None:
                    task.sla_check_at = task_check(definition, task)
            moved += len(tasks)
            if len(tasks) < BATCH:
                break
            after = tasks[-1][0].id
    after = ""
    while True:
        with transaction() as session:
            instances = session.scalars(
                select(InstanceRow).where(InstanceRow.calendar_id == calendar_id, InstanceRow.id > after,
                                          InstanceRow.status == InstanceStatus.RUNNING)
                .order_by(InstanceRow.id).limit(BATCH).with_for_update()
            ).all()
            for instance in instances:
                definition, _ = load_definition(session, instance.workflow_id, instance.version)
                found = workflow_clock(definition, instance.created_at, hours)
                if found is not None:
                    instance.warn_at, instance.expires_at = found
                    instance.sla_check_at = instance_check(definition, instance)
            moved += len(instances)
            if len(instances) < BATCH:
                break
            after = instances[-1].id
    if moved:
        logger.info("calendar %s changed: %d open clocks computed again", calendar_id, moved)
    return moved
