"""Escalation ladders, fired by the scan: each due rung once, in order, in the transaction that holds the row.

The scan locks a due row (``FOR UPDATE SKIP LOCKED``); its ``rung`` column counts the
rungs fired so far and moves under that lock, in the transaction that does what the
rungs say: notices written to the outbox (:func:`oms.store.notices.add`), a human step
reassigned (the engine's reassign move, :func:`oms.engine.people.give`), an escalation
task started on the rung's topic, a breach policy noted for the scan to apply once the
transaction has committed. Two scanners never fire a rung twice: the second does not
get the row, or gets it after the first committed, its counter moved on.

Each firing is one ``task.escalated`` (``workflow.escalated``) event saying what it did. Rungs are
counted from 1 in events, notices and the row's ``rung`` (rung 3 is ``escalations[2]`` of the definition).
A rung fires only while its row is open; a step that ends first never fires the rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..engine.escalations import RUNG, instance_payload, rung_workflow, task_payload
from ..engine.people import give
from ..engine.rungs import instance_ladder, task_ladder
from ..engine.starts import start_instances
from ..model.definitions import Definition
from ..model.ladders import ASSIGNEE, GROUP, USER, Rung, Span, moment
from ..states import OPEN_TASK, EventKind, InstanceStatus, TaskStatus
from ..store import notices
from ..store.candidates import candidates
from ..store.events import record
from ..store.tables import InstanceRow, TaskRow

if TYPE_CHECKING:
    from .advance import Batch


def fire_task_rungs(session: Session, task: TaskRow, definition: Definition, batch: Batch) -> None:
    """Fire the due rungs of an open (locked) task's ladder, in order; count them on the row."""
    ladder = task_ladder(definition, task)
    if ladder is None or task.status not in OPEN_TASK or task.paused_at is not None:
        return
    rungs, span = ladder
    due = _due(rungs, task.rung, span, batch.now)
    key = session.scalar(select(InstanceRow.business_key).where(InstanceRow.id == task.instance_id)) \
        if any(rung.notify for _, rung, _ in due) else None
    for index, rung, when in due:
        facts = {**_facts(task.workflow_id, task.instance_id, task.step_id, task.light, task.expires_at, batch.now,
                          key, index, rung), "task_id": task.id}
        payload = {**task_payload(RUNG, task, batch.now), "light": task.light} if rung.topic else {}
        data = _fire(session, rung, index, len(rungs), when, batch, facts, payload,
                     [t for target in rung.notify for t in _targets(target, task)], task.id, task.step_id)
        if rung.policy:
            data["policy"] = rung.policy
            reason = f"SLA escalated (rung {index + 1}, {rung.at})"
            batch.breached.append((task.id, task.instance_id, rung.policy, reason))
        assign = None if rung.reassign is None else candidates(sorted(set(rung.reassign.users)),
                                                               sorted(set(rung.reassign.groups)))
        record(session, EventKind.TASK_ESCALATED, task.instance_id, batch.now, task, reassigned=assign, **data)
        if assign is not None:
            _reassign(session, task, assign, f"escalation rung {index + 1} ({rung.at})", batch.now)
        task.rung = index + 1


def fire_instance_rungs(session: Session, instance: InstanceRow, definition: Definition, batch: Batch) -> None:
    """Fire the due rungs of a running (locked) instance's own ladder (its workflow's ``sla``), in order."""
    ladder = instance_ladder(definition, instance)
    if ladder is None or instance.status != InstanceStatus.RUNNING:
        return
    rungs, span = ladder
    assert instance.expires_at is not None
    step = definition.steps[instance.current_step].id
    for index, rung, when in _due(rungs, instance.rung, span, batch.now):
        facts = _facts(instance.workflow_id, instance.id, step, instance.light, instance.expires_at, batch.now,
                       instance.business_key, index, rung)
        payload = {**instance_payload(RUNG, instance, definition, batch.now), "light": instance.light} \
            if rung.topic else {}
        data = _fire(session, rung, index, len(rungs), when, batch, facts, payload, list(rung.notify), None, None)
        record(session, EventKind.WORKFLOW_ESCALATED, instance.id, batch.now, **data)
        instance.rung = index + 1


def _fire(session: Session, rung: Rung, index: int, of: int, when: datetime, batch: Batch, facts: dict[str, Any],
          payload: dict[str, Any], targets: list[str], task_id: str | None, step: str | None) -> dict[str, Any]:
    """A rung's notices and escalation task, in the scan's transaction; return its event's data so far."""
    data: dict[str, Any] = {"rung": index + 1, "of": of, "at": rung.at, "due_at": when.isoformat()}
    if targets:
        written = [notices.Notice(workflow_id=facts["workflow"], target=target, facts=facts,
                                 instance_id=facts["instance_id"], task_id=task_id, step_id=step, rung=index + 1)
                  for target in dict.fromkeys(targets)]
        notices.add(session.connection(), written, batch.now)
        batch.notices += len(written)
        data["notices"] = [{"id": notice.id, "target": notice.target} for notice in written]
    if rung.topic:
        workflow, version = rung_workflow(session, rung.topic)
        [dispatch] = start_instances(session, workflow, version, [{**payload, "rung": index + 1, "at": rung.at}],
                                     batch.now)
        batch.started.append(dispatch.instance_id)
        batch.dispatches.append(dispatch)
        data["escalation"] = dispatch.instance_id
    batch.escalated += 1
    return data


def _due(rungs: list[Rung], fired: int | None, span: Span, now: datetime) -> list[tuple[int, Rung, datetime]]:
    """The rungs not fired yet whose moment has come, in order (each after the one before it)."""
    due = []
    for index in range(fired or 0, len(rungs)):
        when = moment(rungs[index].when, span)
        if when > now:
            break
        due.append((index, rungs[index], when))
    return due


def _facts(workflow: str, instance_id: str, step: str, light: str, expires_at: datetime, now: datetime,
           business_key: str | None, index: int, rung: Rung) -> dict[str, Any]:
    """What a notice tells: whose SLA, how late, and which rung sent it."""
    over = round(max((now - expires_at).total_seconds(), 0.0), 3)
    return {"workflow": workflow, "instance_id": instance_id, "step": step, "light": light,
            "expires_at": expires_at.isoformat(), "overdue_by_s": over, "business_key": business_key,
            "rung": index + 1, "at": rung.at}


def _targets(target: str, task: TaskRow) -> list[str]:
    """A ``notify`` target resolved at firing time: ``assignee`` is the step's holder (``user:<name>``) while a
    person holds it, else its candidates now (``user:x``, ``group:y``)."""
    if target != ASSIGNEE:
        return [target]
    if task.status == TaskStatus.RUNNING and task.worker_id:
        return [f"{USER}{task.worker_id}"]
    assign = task.assign or {}
    return [f"{USER}{name}" for name in assign.get("users", [])] + [f"{GROUP}{g}" for g in assign.get("groups", [])]


def _reassign(session: Session, task: TaskRow, assign: dict[str, list[str]], by: str, now: datetime) -> None:
    """The engine's reassign move on the locked step, after the events before it: its claim goes back, its
    candidates change; the row held by the session is told so."""
    session.flush()  # the light's and the rung's events first, then the move's (task.released, task.reassigned)
    holder = task.worker_id if task.status == TaskStatus.RUNNING else None
    give(session.connection(), task.id, assign, holder=holder, by=by, now=now)
    if holder is not None:
        for name, value in (("status", TaskStatus.PENDING.value), ("worker_id", None), ("started_at", None)):
            set_committed_value(task, name, value)
    set_committed_value(task, "assign", assign)
