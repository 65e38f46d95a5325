"""Row builders: the values of new instance and task rows, computed in Python (events: :mod:`oms.store.events`).

Every path that writes new rows (starts, the transactional path, PostgreSQL's
one-statement transitions, reruns, the scanner's escalations) takes its values
from here, so the rows cannot drift apart. Clocks are computed here too:
a step's SLA clock starts when its row is created (``ready_at``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from ..model.deadlines import next_check, shown, step_clock, wake_at, workflow_clock
from ..model.definitions import Definition
from ..model.ladders import Span, next_rung
from ..model.task import Place
from ..states import GREEN, InstanceStatus, TaskStatus, instance_event, task_event
from ..store.catalog import schedule
from ..store.events import event, task_event_row


def new_id(prefix: str) -> str:
    """A fresh id: ``wf-`` for instances, ``tk-`` for tasks, then 32 hex digits."""
    return f"{prefix}-{uuid.uuid4().hex}"


def instance_row(definition: Definition, version: int, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A running instance; its own SLA clock (the workflow's ``sla``) starts now."""
    hours = schedule(definition.calendar)
    warn_at, expires_at = workflow_clock(definition, now, hours) or (None, None)
    check_at = warn_at
    if warn_at is not None and expires_at is not None and definition.sla is not None and definition.escalations:
        check_at = next_check(GREEN, warn_at, expires_at,
                              next_rung(definition.escalations, 0, Span(now, expires_at, definition.sla, hours)))
    return {
        "id": new_id("wf"),
        "workflow_id": definition.id,
        "version": version,
        "status": InstanceStatus.RUNNING.value,
        "current_step": 0,
        "payload": payload,
        "results": {},
        "created_at": now,
        "updated_at": now,
        "warn_at": warn_at,
        "expires_at": expires_at,
        "light": GREEN,
        "sla_check_at": check_at,
        "steps_left": len(definition.steps),
        "waiting": {str(j): len(before) for j, before in enumerate(definition.graph.predecessors)
                    if definition.graph.is_join(j)},
        "idempotency_key": None,
        "calendar_id": definition.calendar if warn_at else None,
        "business_key": None,
    }


def started_event(instance: dict[str, Any], now: datetime) -> dict[str, Any]:
    return event(instance_event(None, InstanceStatus.RUNNING), instance["id"], now, version=instance["version"])


def task_row(
    instance_id: str,
    payload: dict[str, Any] | None,
    definition: Definition,
    index: int,
    now: datetime,
    *,
    attempt: int = 1,
    failures: int = 0,
    lost: int = 0,
    delay: timedelta = timedelta(0),
    item_index: int | None = None,
    item: Any = None,
    deadline: datetime | None = None,
    kept: Place | None = None,
) -> dict[str, Any]:
    """The pending row for step ``index``: the step becomes ready and its SLA clock starts.

    ``attempt`` counts offers of the step, ``failures`` the failed attempts (against
    ``retries``), ``lost`` the lapsed claims (against ``max_deliveries``). ``deadline``: the clock keeps the
    deadline of an earlier attempt (a step whose claim lapsed) instead of starting again, and ``kept`` its place
    in the topic's queue (its ``ready_at``: claims take the oldest first), light and rungs fired. A ``None``
    payload is the instance's, filled in by the store that inserts the row. A mapped
    step has one row per item, with its ``item_index`` and ``item``.
    """
    step = definition.steps[index]
    ready_at = now + delay if kept is None else kept.ready_at
    light, fired = (GREEN, 0) if kept is None else (kept.light, kept.rung)
    hours = schedule(definition.calendar_of(index))
    warn_at, expires_at = step_clock(definition, index, ready_at, hours)
    if deadline is not None:
        warn_at, expires_at = min(warn_at, deadline), deadline
    rung_at = None if step.sla is None or not step.escalations else next_rung(
        step.escalations, fired, Span(ready_at, expires_at, step.sla, hours))
    return {
        "id": new_id("tk"),
        "instance_id": instance_id,
        "workflow_id": definition.id,
        "step_id": step.id,
        "step_index": index,
        "topic": step.topic,
        "attempt": attempt,
        "failures": failures,
        "lost": lost,
        "status": TaskStatus.PENDING.value,
        "payload": payload,
        "created_at": now,
        "ready_at": ready_at,
        "warn_at": warn_at,
        "expires_at": expires_at,
        "light": light,
        "rung": fired or None,
        "sla_check_at": None if definition.is_system or (step.sla is None and step.sleep is None)
        else next_check(light, warn_at, expires_at, rung_at),
        "dispatched_at": now + delay,  # when it is offered: the reconciler counts from then
        "item_index": item_index,
        "item": item,
        "calendar_id": definition.calendar_of(index),
        "paused_s": 0.0,
        "assign": None if step.assign is None else step.assign.model_dump(),
        "wake_at": None if step.sleep is None else wake_at(step.sleep, hours, ready_at),
    }


_QUEUED = task_event(None, TaskStatus.PENDING)
_RETRIED = task_event(None, TaskStatus.PENDING, retried=True)


def queued_event(task: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``task.queued`` for a first attempt, ``task.retried`` for a later one (with a mapped step's item index)."""
    return task_event_row(_QUEUED if task["attempt"] == 1 else _RETRIED, task, now, topic=task["topic"],
                          expires_at=None if (due := shown(task["expires_at"])) is None else due.isoformat())
