"""Status moves through the ORM, with their events: control operations and the SLA scanner's.

The worker transitions (claim, complete, fail, extend, sweep) are the door's
(:mod:`oms.door`) and run as single statements. What stays here is rarer: cancel,
resume, the breach policies and the escalations the scanner starts. Every move
goes through :func:`move_task` or :func:`move_instance`, which ask
:mod:`oms.states` for the event (refusing a move it does not list) and add it in
the caller's transaction. Like the door, these functions never publish: they
return a :class:`~oms.dispatch.Dispatch` for the caller to publish once committed.

Lock order, as everywhere: the instance row first, then its task rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..celery.dispatch import Dispatch
from ..exceptions import InstanceFinished, InvalidTransition, UnknownInstance, check_id
from ..model.definitions import Workflow, load_definition
from ..states import (
    FINISHED_INSTANCE,
    FINISHED_TASK,
    OPEN_TASK,
    InstanceStatus,
    TaskStatus,
    ended_with_instance,
    instance_event,
    task_event,
)
from ..store.portable import insert_rows
from ..store.tables import EventRow, InstanceRow, TaskRow
from .rows import event, instance_row, queued_event, started_event, task_event_row, task_row


def record_event(session: Session, kind: str, instance_id: str, now: datetime, task: TaskRow | None,
                 **data: Any) -> None:
    """Write an event: of a task when ``task`` is given, else of the instance."""
    values = task_event_row(kind, task, now, **data) if task else event(kind, instance_id, now, **data)
    session.add(EventRow(**values))


def freeze_light(row: TaskRow | InstanceRow, now: datetime) -> None:
    """A row finished before its next SLA check keeps its light: the scanner need not look again.

    One finished after it stays due, so the scanner still records the late warning
    or breach, exactly once.
    """
    if row.sla_check_at is not None and now < row.sla_check_at:
        row.sla_check_at = None


def move_task(session: Session, task: TaskRow, new: TaskStatus, now: datetime, kind: str | None = None,
              **data: Any) -> None:
    """Change a task's status (refused unless :mod:`oms.states` lists the move) and log its event."""
    chosen = task_event(TaskStatus(task.status), new, kind, what=f"task {task.id}")
    task.status = new.value
    if new in FINISHED_TASK:
        task.finished_at = now
        freeze_light(task, now)
    record_event(session, chosen, task.instance_id, now, task, **data)


def move_instance(session: Session, instance: InstanceRow, new: InstanceStatus, now: datetime, **data: Any) -> None:
    """Change an instance's status (refused unless :mod:`oms.states` lists the move) and log its event."""
    kind = instance_event(InstanceStatus(instance.status), new, what=f"workflow instance {instance.id}")
    instance.status = new.value
    instance.updated_at = now
    if new in FINISHED_INSTANCE:
        instance.finished_at = now
        freeze_light(instance, now)
    record_event(session, kind, instance.id, now, None, **data)


def offer(session: Session, instance: InstanceRow, definition: Workflow, index: int, now: datetime,
          **counts: Any) -> Dispatch:
    """Queue step ``index`` of ``instance``; return what to publish once committed.

    ``counts`` are the new row's ``attempt``, ``failures``, ``lost``, ``delay`` and a
    mapped step's ``item_index`` and ``item`` (see :func:`oms.rows.task_row`).
    """
    values = task_row(instance.id, instance.payload, definition, index, now, **counts)
    session.add(TaskRow(**values))
    instance.current_step = max(instance.current_step, index)
    instance.updated_at = now
    session.add(EventRow(**queued_event(values, now)))
    delay = counts.get("delay")
    return Dispatch(instance.id, instance.workflow_id, instance.version, index,
                    delay.total_seconds() if delay else 0.0, values["item_index"])


def start_instances(session: Session, definition: Workflow, version: int, payloads: list[dict[str, Any]],
                    now: datetime) -> list[Dispatch]:
    """Start one instance per payload with three bulk INSERTs, in the caller's transaction.

    The scanner starts its escalations this way, in the transaction that records
    the breach, so an escalation exists exactly when its breach does.
    """
    instances = [instance_row(definition, version, payload, now) for payload in payloads]
    tasks = [task_row(i["id"], i["payload"], definition, 0, now) for i in instances]
    events = [started_event(i, now) for i in instances] + [queued_event(t, now) for t in tasks]
    insert_rows(session.connection(), instances, tasks, events)
    return [Dispatch(i["id"], definition.id, version, 0) for i in instances]


def start_instance(session: Session, definition: Workflow, version: int, payload: dict[str, Any],
                   now: datetime) -> tuple[InstanceRow, Dispatch]:
    """Start one instance in the caller's transaction, with the clock passed in; nothing is published."""
    [dispatch] = start_instances(session, definition, version, [payload], now)
    instance = session.get(InstanceRow, dispatch.instance_id)
    assert instance is not None
    return instance, dispatch


def fail_open_task(session: Session, task: TaskRow, instance: InstanceRow, reason: str, now: datetime, *,
                   retry: bool) -> Dispatch | None:
    """Fail a queued or running attempt; with ``retry`` its step's ``retries`` decide, else the instance fails.

    The SLA scanner's breach policies (``on_breach: fail | retry``). The caller holds
    the instance and then the task locked.
    """
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    step = definition.steps[task.step_index]
    task.error = reason
    move_task(session, task, TaskStatus.FAILED, now, "task.failed", reason=reason)
    failures = task.failures + 1
    if retry and failures <= step.retries:
        return offer(session, instance, definition, task.step_index, now, attempt=task.attempt + 1,
                     failures=failures, delay=step.retry_delay(failures), item_index=task.item_index,
                     item=task.item)
    _end_open_tasks(session, instance, InstanceStatus.FAILED, f"step {task.step_id!r} failed", now)
    instance.error = f"step {task.step_id!r} failed after {failures} attempt(s): {reason}"
    move_instance(session, instance, InstanceStatus.FAILED, now, step_id=task.step_id, reason=reason)
    return None


def _end_open_tasks(session: Session, instance: InstanceRow, status: InstanceStatus, reason: str,
                    now: datetime) -> None:
    """The instance ends (``status``): its open tasks fail with ``task.cancelled``, late reports are refused."""
    open_tasks = session.scalars(
        select(TaskRow)
        .where(TaskRow.instance_id == instance.id, TaskRow.status.in_([s.value for s in OPEN_TASK]))
        .order_by(TaskRow.step_index, TaskRow.item_index)
        .with_for_update()
    ).all()
    for task in open_tasks:
        task.error = ended_with_instance(status.value, reason)
        move_task(session, task, TaskStatus.FAILED, now, "task.cancelled", reason=reason)


def _locked_instance(session: Session, instance_id: str) -> InstanceRow:
    instance = session.get(InstanceRow, check_id(instance_id, "instance"), with_for_update=True)
    if instance is None:
        raise UnknownInstance(instance_id)
    return instance


def cancel(session: Session, instance_id: str, now: datetime, reason: str = "cancelled") -> None:
    """End a pending or running instance: its open steps fail and can no longer be completed.

    Queued messages find nothing to claim; a worker still holding a step gets
    ``InstanceFinished`` when it reports. Cancelling a cancelled instance does nothing.
    """
    instance = _locked_instance(session, instance_id)
    if instance.status == InstanceStatus.CANCELLED.value:
        return
    if instance.status in (InstanceStatus.DONE.value, InstanceStatus.FAILED.value):
        raise InstanceFinished(instance_id, instance.status)
    _end_open_tasks(session, instance, InstanceStatus.CANCELLED, reason, now)
    instance.error = f"cancelled: {reason}"
    move_instance(session, instance, InstanceStatus.CANCELLED, now, reason=reason)


def resume(session: Session, instance_id: str, now: datetime) -> list[Dispatch]:
    """Run a failed instance again: only its steps that did not finish, each with a fresh retry budget.

    Every step (every item of a mapped step) whose last attempt failed or was
    cancelled with the instance is offered again; what is done stays done. A step
    that could not start (its map list unreadable) and whose predecessors are done
    is offered afresh.
    """
    instance = _locked_instance(session, instance_id)
    if instance.status != InstanceStatus.FAILED.value:
        raise InvalidTransition(f"workflow instance {instance_id}", instance.status, InstanceStatus.RUNNING.value)
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    latest: dict[tuple[int, int | None], TaskRow] = {}
    for task in session.scalars(select(TaskRow).where(TaskRow.instance_id == instance_id).order_by(TaskRow.attempt)):
        latest[(task.step_index, task.item_index)] = task
    again = [task for task in latest.values() if task.status == TaskStatus.FAILED.value]
    started = {index for index, _ in latest}
    done = {index for index in started
            if all(t.status == TaskStatus.DONE.value for (i, _), t in latest.items() if i == index)}
    done |= {i for i, path in enumerate(definition.graph.maps) if path and definition.steps[i].id in instance.results
             and i not in started}  # mapped over an empty list: done without a task
    unstarted = [i for i in range(len(definition.steps)) if i not in started and i not in done
                 and all(p in done for p in definition.graph.predecessors[i])]
    first = min([t.step_index for t in again] + unstarted, default=None)
    instance.error = None
    instance.finished_at = None
    move_instance(session, instance, InstanceStatus.RUNNING, now,
                  step_id=definition.steps[first].id if first is not None else None)
    dispatches = [offer(session, instance, definition, task.step_index, now, attempt=task.attempt + 1,
                        item_index=task.item_index, item=task.item)
                  for task in sorted(again, key=lambda t: (t.step_index, t.item_index or 0))]
    if unstarted:
        from .plan import Progress

        progress = Progress(definition, instance.id, instance.payload, now, dict(instance.results),
                            dict(instance.waiting), instance.steps_left, instance.current_step)
        for index in unstarted:
            progress.offer(index)
        instance.results, instance.waiting = progress.results, progress.waiting
        instance.steps_left, instance.current_step = progress.steps_left, progress.current_step
        for row in progress.offered:
            session.add(TaskRow(**row))
        session.add_all(EventRow(**e) for e in progress.events)
        dispatches += [Dispatch(instance.id, instance.workflow_id, instance.version, row["step_index"], 0.0,
                                row["item_index"]) for row in progress.offered]
    return dispatches


def get_instance_row(session: Session, instance_id: str) -> InstanceRow:
    instance = session.get(InstanceRow, check_id(instance_id, "instance"))
    if instance is None:
        raise UnknownInstance(instance_id)
    return instance
