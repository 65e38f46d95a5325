"""Paused SLA clocks: a step waiting on someone outside the agency (the citizen) stops its clock.

Pausing parks the step: it stays running, but holds no lease and no worker, so no
sweep re-offers it while it waits for days, and whoever resumes or completes it
later (the portal, a person through the API) may. A human step stays its holder's. While paused, the step's light
is read at the moment it paused, and the scanner neither warns nor breaches it.
Resuming moves ``warn_at`` and ``expires_at`` later by the time paused, counted in
the step's calendar if it has one. A workflow's ``max_pause`` caps the time a step
may spend paused in all: the scanner resumes the clock when the cap is reached.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from ..exceptions import (
    InstanceFinished,
    LeaseLost,
    NotLeaseHolder,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
    check_id,
)
from ..model.deadlines import cap_at, later, paused_time
from ..model.definitions import Definition
from ..states import FINISHED_TASK, EventKind, StepKind, TaskStatus
from ..store.catalog import load_definition, schedule
from ..store.db import retrying, transaction
from ..store.events import record
from ..store.tables import InstanceRow, TaskRow
from .rungs import task_check


def pause(task_id: str, reason: str, *, worker_id: str | None = None, now: datetime) -> bool:
    """Stop the clock of a running step and park it; ``False`` if its clock was paused already.

    ``worker_id``: the caller, who must hold the claim if the step has a holder.
    """
    return retrying(partial(_pause, check_id(task_id, "task"), reason, worker_id, now), "pausing a step's clock")


def resume(task_id: str, *, now: datetime) -> bool:
    """Run a paused step's clock again; ``False`` if it was not paused."""
    return retrying(partial(_resume, check_id(task_id, "task"), now), "resuming a step's clock")


def _locked(session: Session, task_id: str) -> tuple[TaskRow, Definition]:
    """The task and its definition, the instance locked before the task (the engine's one lock order)."""
    found = session.get(TaskRow, task_id)
    if found is None:
        raise TaskNotFound(task_id)
    instance = session.get(InstanceRow, found.instance_id, with_for_update=True)
    task = session.get(TaskRow, task_id, with_for_update=True, populate_existing=True)
    assert instance is not None and task is not None
    if task.status == TaskStatus.LAPSED:
        raise LeaseLost(task_id)
    if task.status == TaskStatus.CANCELLED:
        raise InstanceFinished(instance.id, instance.status)
    if task.status in FINISHED_TASK:
        raise TaskAlreadyFinished(task_id, task.status)
    if task.status != TaskStatus.RUNNING:
        raise TaskNotClaimed(task_id, task.status)
    return task, load_definition(session, task.workflow_id, instance.version)[0]


def _pause(task_id: str, reason: str, worker_id: str | None, now: datetime) -> bool:
    with transaction() as session:
        task, definition = _locked(session, task_id)
        if task.paused_at is not None:
            return False
        if task.lease_expires_at is not None and task.lease_expires_at < now:
            raise LeaseLost(task_id)  # the lapse ended the claim, as for complete/fail/extend
        if worker_id is not None and task.worker_id is not None and task.worker_id != worker_id:
            raise NotLeaseHolder(task_id, task.worker_id, worker_id)
        task.paused_at, task.pause_reason = now, reason
        if task.topic != StepKind.HUMAN.topic:  # a person keeps her claim: her step waits on her
            task.worker_id = None
        task.lease_expires_at = None
        left = budget_left(task, definition)
        # the scanner resumes the clock when the cap is reached; until then it has nothing to look at
        task.sla_check_at = None if left is None else cap_at(schedule(task.calendar_id), now, left)
        record(session, EventKind.TASK_CLOCK_PAUSED, task.instance_id, now, task, reason=reason,
                     max_pause_left_s=None if left is None else max(left.total_seconds(), 0.0))
        return True


def _resume(task_id: str, now: datetime) -> bool:
    with transaction() as session:
        task, definition = _locked(session, task_id)
        if task.paused_at is None:
            return False
        resume_row(session, task, definition, now)
        return True


def budget_left(task: TaskRow, definition: Definition) -> timedelta | None:
    """How much longer the step's clock may stay paused (``None``: no ``max_pause``)."""
    if definition.max_pause is None:
        return None
    return definition.max_pause - timedelta(seconds=task.paused_s or 0.0)


def resume_row(session: Session, task: TaskRow, definition: Definition, now: datetime) -> None:
    """Run a paused (locked) task's clock again at ``now``, or when its ``max_pause`` ran out if earlier."""
    assert task.paused_at is not None
    left = budget_left(task, definition)
    hours = schedule(task.calendar_id)
    end = now if left is None else min(now, cap_at(hours, task.paused_at, left))
    end = max(end, task.paused_at)
    paused = paused_time(hours, task.paused_at, end)
    task.warn_at = later(hours, task.warn_at, paused)
    task.expires_at = later(hours, task.expires_at, paused)
    task.paused_s = (task.paused_s or 0.0) + paused.total_seconds()
    record(session, EventKind.TASK_CLOCK_RESUMED, task.instance_id, now, task,
           paused_s=round(paused.total_seconds(), 3), reason=task.pause_reason, capped=end < now or None,
           expires_at=task.expires_at.isoformat())
    task.paused_at, task.pause_reason = None, None
    task.sla_check_at = task_check(definition, task)  # its light's next change, or its ladder's next rung
