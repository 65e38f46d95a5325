"""The one module that writes status columns.

Every change goes through :func:`_move_task` or :func:`_move_instance`, which check
the change against the tables in :mod:`oms.states` and add the event row in the
caller's transaction. Functions here take a session and ``now``; they never
publish to the broker. They return a :class:`Dispatch` saying what to publish once
the transaction has committed, so a crash in between leaves a queued row that can
be published again, never a message about a row that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.orm import Session

from .definitions import Workflow, load_definition
from .exceptions import (
    InstanceFinished,
    check_id,
    InvalidTransition,
    LeaseLost,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
    UnknownInstance,
)
from .models import EventRow, InstanceRow, TaskRow
from .settings import get_settings
from .states import (
    FINISHED_INSTANCE,
    FINISHED_TASK,
    GREEN,
    INSTANCE_TRANSITIONS,
    LEASE_EXPIRED,
    WORKER_LOST,
    TASK_TRANSITIONS,
    InstanceStatus,
    TaskStatus,
)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Dispatch:
    """Publish the chain of ``instance_id`` from step ``from_step``, after ``countdown`` seconds."""

    instance_id: str
    workflow_id: str
    version: int
    from_step: int
    countdown: float = 0.0


def _event_values(
    kind: str, instance_id: str, now: datetime, task_id: str | None, step_id: str | None, attempt: int | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "task_id": task_id,
        "step_id": step_id,
        "attempt": attempt,
        "kind": kind,
        "at": now,
        "data": {k: v for k, v in data.items() if v is not None},
    }


def _event(session: Session, kind: str, instance_id: str, now: datetime, task: TaskRow | None, **data: Any) -> None:
    session.add(EventRow(**_event_values(kind, instance_id, now, task.id if task else None,
                                         task.step_id if task else None, task.attempt if task else None, data)))


def _move_task(
    session: Session, task: TaskRow, new: TaskStatus, now: datetime, kind: str | None = None, **data: Any
) -> None:
    old = TaskStatus(task.status)
    kinds = TASK_TRANSITIONS.get((old, new), ())
    if not kinds or (kind is not None and kind not in kinds):
        raise InvalidTransition(f"task {task.id}", old.value, new.value)
    task.status = new.value
    if new in FINISHED_TASK:
        _freeze_light(task, now)
    _event(session, kind or kinds[0], task.instance_id, now, task, **data)


def _freeze_light(row: TaskRow | InstanceRow, now: datetime) -> None:
    """A row finished before its next SLA check keeps its light: the scanner need not look again.

    One finished after it stays due, so the scanner still records the late warning
    or breach, exactly once.
    """
    if row.sla_check_at is not None and now < row.sla_check_at:
        row.sla_check_at = None


def _move_instance(session: Session, instance: InstanceRow, new: InstanceStatus, now: datetime, **data: Any) -> None:
    old = InstanceStatus(instance.status)
    kind = INSTANCE_TRANSITIONS.get((old, new))
    if kind is None:
        raise InvalidTransition(f"workflow instance {instance.id}", old.value, new.value)
    instance.status = new.value
    instance.updated_at = now
    if new in FINISHED_INSTANCE:
        instance.finished_at = now
        _freeze_light(instance, now)
    _event(session, kind, instance.id, now, None, **data)


def _task_values(
    instance_id: str,
    workflow_id: str,
    payload: dict[str, Any],
    definition: Workflow,
    index: int,
    now: datetime,
    *,
    attempt: int = 1,
    failures: int = 0,
    lost: int = 0,
    delay: timedelta = timedelta(0),
) -> dict[str, Any]:
    """The pending row for step ``index``: the step becomes ready and its SLA clock starts."""
    step = definition.steps[index]
    ready_at = now + delay
    warn_at = ready_at + step.warn_delay(step.sla, get_settings().sla_warn_fraction)
    return {
        "id": new_id("tk"),
        "instance_id": instance_id,
        "workflow_id": workflow_id,
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
        "expires_at": ready_at + step.sla,
        "light": GREEN,
        "sla_check_at": None if definition.is_system else warn_at,
        "dispatched_at": ready_at,
    }


def _offered_event(task: dict[str, Any], now: datetime) -> dict[str, Any]:
    first, retried = TASK_TRANSITIONS[(None, TaskStatus.PENDING)]
    return _event_values(first if task["attempt"] == 1 else retried, task["instance_id"], now, task["id"],
                         task["step_id"], task["attempt"],
                         {"topic": task["topic"], "expires_at": task["expires_at"].isoformat()})


def _offer(
    session: Session,
    instance: InstanceRow,
    definition: Workflow,
    index: int,
    now: datetime,
    *,
    delay: timedelta = timedelta(0),
    **counts: int,
) -> Dispatch:
    """Queue step ``index`` of ``instance``; return what to publish once committed.

    ``counts`` are the new row's ``attempt``, ``failures`` and ``lost`` (see :func:`_task_values`).
    """
    task = _task_values(instance.id, instance.workflow_id, instance.payload, definition, index, now,
                        delay=delay, **counts)
    session.add(TaskRow(**task))
    instance.current_step = index
    instance.updated_at = now
    session.add(EventRow(**_offered_event(task, now)))
    return Dispatch(instance.id, instance.workflow_id, instance.version, index, delay.total_seconds())


def _instance_values(definition: Workflow, version: int, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    deadline = definition.sla
    warn_at = now + definition.warn_delay(deadline, get_settings().sla_warn_fraction) if deadline else None
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
        "expires_at": now + deadline if deadline else None,
        "light": GREEN,
        "sla_check_at": warn_at,
    }


def start_instance(
    session: Session, definition: Workflow, version: int, payload: dict[str, Any], now: datetime
) -> tuple[InstanceRow, Dispatch]:
    """Create a running instance and offer its first step."""
    instance = InstanceRow(**_instance_values(definition, version, payload, now))
    session.add(instance)
    _event(session, INSTANCE_TRANSITIONS[(None, InstanceStatus.RUNNING)], instance.id, now, None, version=version)
    return instance, _offer(session, instance, definition, 0, now)


def start_instances(
    session: Session, definition: Workflow, version: int, payloads: list[dict[str, Any]], now: datetime
) -> list[Dispatch]:
    """Start one instance per payload with three bulk INSERTs: the SLA scanner's escalations.

    The same rows and events as :func:`start_instance`, without the ORM's per-object
    bookkeeping, which a burst of thousands of breaches cannot afford.
    """
    if not payloads:
        return []
    instances = [_instance_values(definition, version, payload, now) for payload in payloads]
    tasks = [_task_values(i["id"], i["workflow_id"], i["payload"], definition, 0, now) for i in instances]
    started = INSTANCE_TRANSITIONS[(None, InstanceStatus.RUNNING)]
    events = [_event_values(started, i["id"], now, None, None, None, {"version": version}) for i in instances]
    events += [_offered_event(task, now) for task in tasks]
    session.execute(insert(InstanceRow), instances)
    session.execute(insert(TaskRow), tasks)
    session.execute(insert(EventRow), events)
    return [Dispatch(i["id"], definition.id, version, 0) for i in instances]


def claim_step(
    session: Session, instance_id: str, index: int, worker_id: str, now: datetime, lease: timedelta
) -> tuple[TaskRow, dict[str, Any]] | None:
    """Claim the pending attempt at step ``index`` for a push worker; ``None`` if there is none.

    Returns the task and its instance's results so far (one query for both).

    The claim is leased like a pull claim: the worker's heartbeats extend it, and a
    worker that dies lets it lapse, so the step is offered again.

    ``None`` is the normal answer to a redelivered or duplicated message: the step
    was claimed, finished or cancelled already, or its retry is not due yet.
    """
    return _claim_first(
        session,
        worker_id,
        now,
        lease,
        TaskRow.instance_id == instance_id,
        TaskRow.step_index == index,
        TaskRow.ready_at <= now + timedelta(seconds=1),
    )


def claim_topic(
    session: Session, topic: str, worker_id: str, now: datetime, lease: timedelta
) -> tuple[TaskRow, dict[str, Any]] | None:
    """Claim the oldest due step on ``topic`` for a pull worker, with a lease; ``None`` if none is due.

    Returns the task and its instance's results so far.

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL lets concurrent callers pass over each
    other's rows; SQLite serialises writers (``BEGIN IMMEDIATE``) instead.
    """
    return _claim_first(session, worker_id, now, lease, TaskRow.topic == topic, TaskRow.ready_at <= now)


def _claim_first(
    session: Session, worker_id: str, now: datetime, lease: timedelta, *where: ColumnElement[bool]
) -> tuple[TaskRow, dict[str, Any]] | None:
    """Claim the oldest pending attempt matching ``where``, leased until ``now + lease``."""
    found = session.execute(
        select(TaskRow, InstanceRow.results)
        .join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
        .where(TaskRow.status == TaskStatus.PENDING.value, *where)
        .order_by(TaskRow.ready_at)
        .with_for_update(of=TaskRow, skip_locked=True)
        .limit(1)
    ).first()
    if found is None:
        return None
    task, results = found
    task.lease_expires_at = now + lease
    task.worker_id = worker_id
    task.started_at = now
    _move_task(session, task, TaskStatus.RUNNING, now, worker_id=worker_id)
    return task, results


def next_due_at(session: Session, topic: str) -> datetime | None:
    """When something next becomes claimable on ``topic`` without a new message.

    That is a retry waiting out its backoff, or a pull claim whose lease runs out.
    """
    pending = session.scalar(
        select(func.min(TaskRow.ready_at)).where(TaskRow.topic == topic, TaskRow.status == TaskStatus.PENDING.value)
    )
    leased = session.scalar(
        select(func.min(TaskRow.lease_expires_at)).where(
            TaskRow.topic == topic, TaskRow.status == TaskStatus.RUNNING.value
        )
    )
    return min((t for t in (pending, leased) if t is not None), default=None)


def expire_leases(session: Session, now: datetime, topic: str | None = None, limit: int = 100) -> list[Dispatch]:
    """Re-offer steps whose claim lapsed (worker died, pull lease ran out): a new attempt is queued.

    A lost claim does not count against ``retries`` (the step did not fail, its
    worker went away) but against ``max_deliveries``: a step that keeps killing its
    worker fails with reason ``worker_lost`` and follows its failure rules.
    """
    query = (
        select(TaskRow)
        .where(TaskRow.status == TaskStatus.RUNNING.value, TaskRow.lease_expires_at < now)
        .with_for_update(skip_locked=True)
        .limit(limit)
    )
    if topic is not None:
        query = query.where(TaskRow.topic == topic)
    dispatches = []
    for task in session.scalars(query).all():
        instance = session.get(InstanceRow, task.instance_id, with_for_update=True)
        assert instance is not None
        definition, _ = load_definition(session, instance.workflow_id, instance.version)
        lost = task.lost + 1
        if lost >= definition.steps[task.step_index].max_deliveries:
            dispatch = _fail(session, task, instance, WORKER_LOST, now, retry=True, lost=lost)
            if dispatch:
                dispatches.append(dispatch)
            continue
        task.finished_at = now
        task.error = LEASE_EXPIRED
        _move_task(session, task, TaskStatus.FAILED, now, "task.lease_expired", worker_id=task.worker_id, lost=lost)
        if instance.status == InstanceStatus.RUNNING.value:
            dispatches.append(
                _offer(session, instance, definition, task.step_index, now, attempt=task.attempt + 1,
                       failures=task.failures, lost=lost)
            )
    return dispatches


def heartbeat(session: Session, task_ids: list[str], lease: timedelta, now: datetime) -> int:
    """Extend the leases of running claims held by a live push worker; return how many."""
    found = session.scalars(
        select(TaskRow).where(TaskRow.id.in_(task_ids), TaskRow.status == TaskStatus.RUNNING.value)
    ).all()
    for task in found:
        task.lease_expires_at = now + lease
    return len(found)


def extend_lease(session: Session, task_id: str, lease: timedelta, now: datetime) -> datetime:
    """Push a pull claim's lease to ``now + lease`` (the heartbeat of long work)."""
    task, _ = _locked_task(session, task_id)
    task.lease_expires_at = now + lease
    return task.lease_expires_at


def _locked_task(session: Session, task_id: str) -> tuple[TaskRow, InstanceRow]:
    """The task and its instance, both locked (one query), if the task may be finished now."""
    found = session.execute(
        select(TaskRow, InstanceRow)
        .join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
        .where(TaskRow.id == check_id(task_id, "task"))
        .with_for_update()
    ).first()
    if found is None:
        raise TaskNotFound(task_id)
    task, instance = found
    if instance.status == InstanceStatus.CANCELLED.value:
        raise InstanceFinished(instance.id, instance.status)
    if task.status == TaskStatus.FAILED.value and task.error == LEASE_EXPIRED:
        raise LeaseLost(task_id)
    if task.status in (TaskStatus.DONE.value, TaskStatus.FAILED.value):
        raise TaskAlreadyFinished(task_id, task.status)
    if task.status != TaskStatus.RUNNING.value:
        raise TaskNotClaimed(task_id, task.status)
    if instance.status != InstanceStatus.RUNNING.value:
        raise InstanceFinished(instance.id, instance.status)
    return task, instance


def complete(session: Session, task_id: str, result: dict[str, Any] | None, now: datetime) -> Dispatch | None:
    """Mark a running task done and move its instance on; return the next step to publish."""
    task, instance = _locked_task(session, task_id)
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    task.finished_at = now
    task.result = result
    _move_task(session, task, TaskStatus.DONE, now)
    if result is not None:
        instance.results = {**instance.results, task.step_id: result}
    if task.step_index + 1 < len(definition.steps):
        return _offer(session, instance, definition, task.step_index + 1, now)
    _move_instance(session, instance, InstanceStatus.DONE, now)
    return None


def fail(session: Session, task_id: str, reason: str, now: datetime) -> Dispatch | None:
    """Mark a running task failed; retry it per its step's rules or fail the instance."""
    task, instance = _locked_task(session, task_id)
    return _fail(session, task, instance, reason, now, retry=True)


def fail_on_breach(
    session: Session, task: TaskRow, instance: InstanceRow, *, retry: bool, now: datetime, reason: str = "SLA breached"
) -> Dispatch | None:
    """Fail a step past its SLA; with ``retry`` its ``retries`` decide what follows, else the instance fails.

    Works on a queued step as well as a running one; the caller holds both rows locked.
    """
    return _fail(session, task, instance, reason, now, retry=retry)


def _fail(
    session: Session, task: TaskRow, instance: InstanceRow, reason: str, now: datetime, *, retry: bool, lost: int = 0
) -> Dispatch | None:
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    step = definition.steps[task.step_index]
    task.finished_at = now
    task.error = reason
    _move_task(session, task, TaskStatus.FAILED, now, "task.failed", reason=reason, lost=lost or None)
    failures = task.failures + 1
    if retry and failures <= step.retries:
        return _offer(
            session,
            instance,
            definition,
            task.step_index,
            now,
            attempt=task.attempt + 1,
            failures=failures,
            delay=step.retry_delay(failures),
        )
    instance.error = f"step {task.step_id!r} failed after {failures} attempt(s): {reason}"
    _move_instance(session, instance, InstanceStatus.FAILED, now, step_id=task.step_id, reason=reason)
    return None


def cancel(session: Session, instance_id: str, now: datetime, reason: str = "cancelled") -> None:
    """End a pending or running instance: its open steps fail and can no longer be completed.

    Queued messages find nothing to claim; a worker still holding a step gets
    ``InstanceFinished`` when it reports. Cancelling a cancelled instance does nothing.
    """
    instance = session.get(InstanceRow, check_id(instance_id, "instance"), with_for_update=True)
    if instance is None:
        raise UnknownInstance(instance_id)
    if instance.status == InstanceStatus.CANCELLED.value:
        return
    if instance.status in (InstanceStatus.DONE.value, InstanceStatus.FAILED.value):
        raise InstanceFinished(instance_id, instance.status)
    open_tasks = session.scalars(
        select(TaskRow)
        .where(TaskRow.instance_id == instance_id, TaskRow.status.in_((TaskStatus.PENDING.value, TaskStatus.RUNNING.value)))
        .with_for_update()
    ).all()
    for task in open_tasks:
        task.finished_at = now
        task.error = f"instance cancelled: {reason}"
        _move_task(session, task, TaskStatus.FAILED, now, "task.cancelled", reason=reason)
    instance.error = f"cancelled: {reason}"
    _move_instance(session, instance, InstanceStatus.CANCELLED, now, reason=reason)


def resume(session: Session, instance_id: str, now: datetime) -> Dispatch:
    """Run a failed instance again from its failed step, with a fresh retry budget."""
    instance = session.get(InstanceRow, check_id(instance_id, "instance"), with_for_update=True)
    if instance is None:
        raise UnknownInstance(instance_id)
    if instance.status != InstanceStatus.FAILED.value:
        raise InvalidTransition(f"workflow instance {instance_id}", instance.status, InstanceStatus.RUNNING.value)
    last = session.scalars(
        select(TaskRow).where(TaskRow.instance_id == instance_id).order_by(TaskRow.step_index.desc(), TaskRow.attempt.desc())
    ).first()
    assert last is not None
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    instance.error = None
    instance.finished_at = None
    _move_instance(session, instance, InstanceStatus.RUNNING, now, step_id=last.step_id)
    return _offer(session, instance, definition, last.step_index, now, attempt=last.attempt + 1)


def record_event(session: Session, kind: str, instance_id: str, now: datetime, task: TaskRow | None, **data: Any) -> None:
    """Write an event that is not a status change (SLA lights)."""
    _event(session, kind, instance_id, now, task, **data)


def get_instance_row(session: Session, instance_id: str) -> InstanceRow:
    instance = session.get(InstanceRow, check_id(instance_id, "instance"))
    if instance is None:
        raise UnknownInstance(instance_id)
    return instance
