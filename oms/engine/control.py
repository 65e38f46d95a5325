"""Control operations: cancel an instance, run a failed one again, and the SLA's breach policies.

Rarer than the workers' transitions, each runs in a transaction of its own through
the same builders (:mod:`oms.store.moves`) and, for an attempt that ends, the same
plan (:mod:`oms.engine.plan`). Like the door, these never publish inside the
transaction: they return :class:`~oms.celery.dispatch.Dispatch` es for the caller
to publish once committed.

Lock order, as everywhere: the instance row first, then its task rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..celery.dispatch import Dispatch, publish_all
from ..durations import utcnow
from ..exceptions import BusinessKeyInUse, InstanceFinished, InvalidTransition, UnknownInstance, check_id
from ..model.task import Task
from ..states import OPEN_TASK, RED, InstanceStatus, TaskStatus, instance_event
from ..store import moves
from ..store.catalog import load_definition
from ..store.contract import Offered
from ..store.db import retrying, transaction
from ..store.events import event
from ..store.tables import InstanceRow, TaskRow, events, instances, tasks
from .checks import check_reason
from .escalations import VIOLATION, Escalations, escalation_workflow, task_payload
from .plan import Outcome, Plan, apply, cancel_open_tasks, dispatches, take_kept
from .progress import Progress
from .rows import queued_event, task_row


def _locked(session: Session, instance_id: str) -> InstanceRow:
    instance = session.get(InstanceRow, check_id(instance_id, "instance"), with_for_update=True)
    if instance is None:
        raise UnknownInstance(instance_id)
    return instance


def _move_instance(session: Session, instance: InstanceRow, new: InstanceStatus, now: datetime,
                   values: dict[str, object], **data: object) -> None:
    """Move a locked instance to ``new`` (refused unless :mod:`oms.states` lists the move) and log its event."""
    kind = instance_event(InstanceStatus(instance.status), new, what=f"workflow instance {instance.id}")
    session.execute(update(instances).where(instances.c.id == instance.id).values(updated_at=now, **values))
    session.expire(instance)  # the ORM row is stale now
    session.execute(insert(events), [event(kind, instance.id, now, **data)])


def cancel(session: Session, instance_id: str, now: datetime, reason: str = "cancelled") -> None:
    """End a pending or running instance: its open steps are cancelled and can no longer be completed.

    Queued messages find nothing to claim; a worker still holding a step gets
    ``InstanceFinished`` when it reports. Cancelling a cancelled instance does nothing.
    """
    instance = _locked(session, instance_id)
    if instance.status == InstanceStatus.CANCELLED:
        return
    if instance.status in (InstanceStatus.DONE, InstanceStatus.FAILED):
        raise InstanceFinished(instance_id, instance.status)
    cancel_open_tasks(session.connection(), instance.id, now, reason)
    _move_instance(session, instance, InstanceStatus.CANCELLED, now,
                   moves.end_instance(InstanceStatus.CANCELLED, now, error=f"cancelled: {reason}"), reason=reason)


def rerun(session: Session, instance_id: str, now: datetime) -> list[Dispatch]:
    """Run a failed instance again: only its steps that did not finish, each with a fresh retry budget.

    Every step (every item of a mapped step) whose last attempt failed or was
    cancelled with the instance is offered again; what is done stays done. A step
    that could not start (its map list unreadable) and whose predecessors are done
    is offered afresh.
    """
    instance = _locked(session, instance_id)
    if instance.status != InstanceStatus.FAILED:
        raise InvalidTransition(f"workflow instance {instance_id}", instance.status, InstanceStatus.RUNNING,
                                "only a failed instance is retried (start a new one instead)")
    if instance.business_key is not None:  # its key went to a newer instance meanwhile: one unfinished per key
        other = session.scalar(moves.holder_of_key(instance.workflow_id, instance.business_key))
        if other is not None:
            raise BusinessKeyInUse(instance.workflow_id, instance.business_key, other)
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    latest: dict[tuple[int, int | None], TaskRow] = {}
    for task in session.scalars(select(TaskRow).where(TaskRow.instance_id == instance_id).order_by(TaskRow.attempt)):
        latest[(task.step_index, task.item_index)] = task
    again = sorted((t for t in latest.values() if t.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)),
                   key=lambda t: (t.step_index, t.item_index or 0))
    started = {index for index, _ in latest}
    done = {index for index in started
            if all(t.status == TaskStatus.DONE for (i, _), t in latest.items() if i == index)}
    done |= {i for i, path in enumerate(definition.graph.maps) if path and definition.steps[i].id in instance.results
             and i not in started}  # mapped over an empty list: done without a task
    unstarted = [i for i in range(len(definition.steps)) if i not in started and i not in done
                 and all(p in done for p in definition.graph.predecessors[i])]
    first = min([t.step_index for t in again] + unstarted, default=None)
    progress = Progress.of(definition, instance, now)
    for task in again:
        progress.current_step = max(progress.current_step, task.step_index)
        row = task_row(instance.id, instance.payload, definition, task.step_index, now, attempt=task.attempt + 1,
                       item_index=task.item_index, item=task.item)
        progress.offered.append(row)
        progress.events.append(queued_event(row, now))
    for index in unstarted:
        progress.offer(index)
    _move_instance(session, instance, InstanceStatus.RUNNING, now, {
        "status": InstanceStatus.RUNNING, "error": None, "finished_at": None, "results": progress.results,
        "waiting": progress.waiting, "steps_left": progress.steps_left, "current_step": progress.current_step,
    }, step_id=definition.steps[first].id if first is not None else None)
    if progress.offered:
        session.execute(insert(tasks), progress.offered)
    session.execute(insert(events), progress.events)
    offered = [Offered(row["step_index"], row["item_index"]) for row in progress.offered]
    session.flush()  # the instance as moved, before a kept signal moves it on
    offered += take_kept(session.connection(), definition, progress.offered, instance.payload, instance.version, now)
    return [Dispatch(instance.id, instance.workflow_id, instance.version, o.step_index, o.countdown, o.item_index)
            for o in offered]


def end_breached(session: Session, task_id: str, instance_id: str, policy: str, now: datetime,
                 reason: str = "SLA breached") -> list[Dispatch]:
    """A breach policy (``on_breach: fail | retry``) ends an open attempt whose SLA ran out: ``retry`` offers the
    step again as a failed attempt counted against ``retries`` (the instance fails with none left), ``fail``
    fails the instance. Nothing happens if the instance or the attempt finished (late) since the breach."""
    instance = _locked(session, instance_id)
    task = session.get(TaskRow, task_id)
    if instance.status != InstanceStatus.RUNNING or task is None or task.status not in OPEN_TASK:
        return []
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    held = Task(id=task.id, instance_id=task.instance_id, workflow_id=task.workflow_id, step_id=task.step_id,
                topic=task.topic, attempt=task.attempt, payload={}, version=instance.version,
                step_index=task.step_index, failures=task.failures, item=task.item, item_index=task.item_index)
    session.flush()
    offered = apply(session.connection(), Plan(definition, held, Outcome.breached(reason, retry=policy == "retry"),
                                               now)) or []
    return dispatches(held, offered)


def breach(task_id: str, reason: str, now: datetime) -> list[Dispatch]:
    """A push handler overran its SLA (``SoftTimeLimitExceeded``): record the breach, then fail the attempt.

    The breach is recorded and escalated once, whether the scanner or this call sees
    it first. The attempt fails: under ``on_breach: fail`` so does the instance;
    otherwise the step's ``retries`` decide. Returns what to publish.
    """
    escalation_workflow(VIOLATION)  # saved before the transaction: SQLite has one writer
    escalations = Escalations(now)
    with transaction() as session:
        found = session.get(TaskRow, task_id)
        if found is None:
            return []
        instance = _locked(session, found.instance_id)
        task = session.get(TaskRow, task_id, with_for_update=True, populate_existing=True)
        if task is None or task.status != TaskStatus.RUNNING:
            return []
        definition, _ = load_definition(session, instance.workflow_id, instance.version)
        if task.light != RED:
            payload = task_payload(VIOLATION, task, now)
            moves.move_light(session, task, RED, now, check_at=None, expires_at=payload["expires_at"],
                             overdue_by_s=payload["overdue_by_s"], source="soft_time_limit")
            if definition.steps[task.step_index].escalations is None:  # a ladder replaces the default escalation
                escalations.escalate(VIOLATION, payload)
                escalations.start(session)
        dispatches = list(escalations.dispatches)
        if instance.status == InstanceStatus.RUNNING:
            policy = "fail" if definition.steps[task.step_index].on_breach == "fail" else "retry"
            dispatches += end_breached(session, task_id, instance.id, policy, now, reason)
    return dispatches


def cancel_workflow(instance_id: str, reason: str = "cancelled by operator") -> None:
    """Cancel a pending or running instance (see :func:`cancel`)."""
    check_reason(reason, "a cancellation's reason")

    def work() -> None:
        with transaction() as session:
            cancel(session, instance_id, utcnow(), reason)

    retrying(work, "cancelling a workflow")


def retry_workflow(instance_id: str) -> None:
    """Run a failed instance again from what did not finish (see :func:`rerun`)."""

    def work() -> list[Dispatch]:
        with transaction() as session:
            return rerun(session, instance_id, utcnow())

    publish_all(retrying(work, "running a workflow again"))
