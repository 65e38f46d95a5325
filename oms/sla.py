"""SLA lights and the scanner that turns late steps yellow, then red, and escalates them.

A row's clock starts when it becomes ready. ``sla_check_at`` holds the next moment
its light can change (``warn_at`` while green, ``expires_at`` while yellow), so the
scan reads only due rows through a partial index. Rows are locked with ``FOR
UPDATE SKIP LOCKED``; two scanners never take the same row, and a row whose light
has moved on is no longer due: each warning and breach is recorded once.

An escalation is an instance of a one-step system workflow whose step is offered on
the ``sla_violation`` (or ``sla_warning``) topic, created in the same transaction as
the event: a governance agent takes it like any other step, pushed or pulled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import transitions
from .db import retrying, transaction
from .definitions import Workflow, ensure_saved, load_definition, system_workflow
from .dispatch import Dispatch, publish_all
from .door import sweep, utcnow
from .models import InstanceRow, TaskRow
from .settings import get_settings
from .states import (
    FINISHED_TASK,
    GREEN,
    OPEN_TASK,
    RED,
    YELLOW,
    InstanceStatus,
    TaskStatus,
    light_at,
    light_event,
)

logger = logging.getLogger(__name__)


@dataclass
class ScanReport:
    """What one scan changed."""

    warnings: int = 0
    violations: int = 0
    #: Instance ids of the escalations started (one per warning and per violation).
    escalations: list[str] = field(default_factory=list)
    leases_expired: int = 0


# -- escalation workflows ---------------------------------------------------

@lru_cache(maxsize=8)
def _escalation_definition(action: str, topic: str) -> tuple[Workflow, str]:
    """The system workflow for ``action`` on ``topic``, with its digest (computed once)."""
    workflow = system_workflow(
        {"id": f"oms.{action}", "description": f"Escalation of an SLA event ({action})",
         "steps": [{"id": "handle", "topic": topic, "sla": "24h"}]}
    )
    return workflow, workflow.digest()


def escalation_workflow(action: str) -> tuple[Workflow, int]:
    """The system workflow that carries ``action`` (``sla_violation``/``sla_warning``), and its version."""
    settings = get_settings()
    topic = settings.sla_violation_topic if action == "sla_violation" else settings.sla_warning_topic
    workflow, digest = _escalation_definition(action, topic)
    return workflow, ensure_saved(workflow, digest)


@dataclass
class _Batch:
    """What one transaction of the scan decided: escalations to start together, chains to publish after."""

    now: datetime
    report: ScanReport
    escalations: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"sla_warning": [], "sla_violation": []}
    )
    dispatches: list[Dispatch] = field(default_factory=list)
    #: ``(task id, instance id, policy)`` of open steps that turned red under ``on_breach: fail | retry``.
    breached: list[tuple[str, str, str]] = field(default_factory=list)

    def escalate(self, action: str, payload: dict[str, Any]) -> None:
        if action == "sla_warning":
            self.report.warnings += 1
        else:
            self.report.violations += 1
        self.escalations[action].append(payload)

    def start_escalations(self, session: Session) -> None:
        """One bulk insert per action: a burst of thousands of breaches costs a few statements."""
        for action, payloads in self.escalations.items():
            if not payloads:  # callers save only the definitions they use before the transaction:
                continue      # looking up another here could be a second writer, which SQLite blocks
            workflow, version = escalation_workflow(action)
            started = transitions.start_instances(session, workflow, version, payloads, self.now)
            self.report.escalations.extend(d.instance_id for d in started)
            self.dispatches.extend(started)
            payloads.clear()


# -- the scan ---------------------------------------------------------------


def _task_payload(action: str, task: TaskRow, now: datetime) -> dict[str, Any]:
    """The escalation's payload: which task (and which item of a mapped step) is late, and by how much."""
    item = {} if task.item_index is None else {"item_index": task.item_index}
    return {
        **item,
        "action": action,
        "task_id": task.id,
        "instance_id": task.instance_id,
        "workflow": task.workflow_id,
        "step": task.step_id,
        "topic": task.topic,
        "attempt": task.attempt,
        "status": task.status,
        "warn_at": task.warn_at.isoformat(),
        "expires_at": task.expires_at.isoformat(),
        "overdue_by_s": round(max((now - task.expires_at).total_seconds(), 0.0), 3),
    }


def _advance_task(session: Session, task: TaskRow, version: int, batch: _Batch) -> None:
    """Move one due task's light on, record the event and queue its escalation.

    A step still open when it turns red under ``on_breach: fail | retry`` is noted,
    for :func:`_apply_policies` once this transaction has committed.
    """
    now = batch.now
    finished = task.status in FINISHED_TASK
    moment = min(now, task.finished_at) if finished and task.finished_at else now
    light = light_at(moment, task.warn_at, task.expires_at)
    if light == task.light:  # not due after all (clock moved back?): look again later
        task.sla_check_at = task.warn_at if light == GREEN else task.expires_at
        return
    kind = light_event("task", task.light, light)
    task.light = light
    if light == YELLOW:
        task.sla_check_at = None if finished else task.expires_at
        transitions.record_event(session, kind, task.instance_id, now, task,
                                 warn_at=task.warn_at.isoformat(), expires_at=task.expires_at.isoformat())
        batch.escalate("sla_warning", _task_payload("sla_warning", task, now))
        return
    task.sla_check_at = None
    payload = _task_payload("sla_violation", task, now)
    transitions.record_event(session, kind, task.instance_id, now, task,
                             expires_at=payload["expires_at"], overdue_by_s=payload["overdue_by_s"])
    batch.escalate("sla_violation", payload)
    if not finished:
        definition, _ = load_definition(session, task.workflow_id, version)
        policy = definition.steps[task.step_index].on_breach
        if policy != "escalate":
            batch.breached.append((task.id, task.instance_id, policy))


def _apply_policies(batch: _Batch) -> None:
    """``on_breach``: ``fail`` and ``retry`` end the breached attempt, one transaction each.

    Run after the scan's transaction, which holds task rows only: here the instance
    is locked first, then its task, the order every transition takes.
    """
    for task_id, instance_id, policy in batch.breached:
        dispatch = retrying(partial(_end_breached, task_id, instance_id, policy, batch.now),
                            "applying a breach policy")
        if dispatch:
            batch.dispatches.append(dispatch)
    batch.breached.clear()


def _end_breached(task_id: str, instance_id: str, policy: str, now: datetime) -> Dispatch | None:
    with transaction() as session:
        instance = session.get(InstanceRow, instance_id, with_for_update=True)
        task = session.get(TaskRow, task_id, with_for_update=True)
        assert instance is not None and task is not None
        if instance.status != InstanceStatus.RUNNING.value or TaskStatus(task.status) not in OPEN_TASK:
            return None  # finished (late) or cancelled since the scan saw it
        return transitions.fail_open_task(session, task, instance, "SLA breached", now, retry=policy == "retry")


def _advance_instance(session: Session, instance: InstanceRow, batch: _Batch) -> None:
    now = batch.now
    finished = instance.status != InstanceStatus.RUNNING.value
    moment = min(now, instance.finished_at) if finished and instance.finished_at else now
    light = light_at(moment, instance.warn_at, instance.expires_at)
    if light == instance.light:
        instance.sla_check_at = instance.warn_at if light == GREEN else instance.expires_at
        return
    kind = light_event("instance", instance.light, light)
    instance.light = light
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    action = "sla_warning" if light == YELLOW else "sla_violation"
    instance.sla_check_at = instance.expires_at if light == YELLOW and not finished else None
    assert instance.expires_at is not None
    payload = {
        "action": action,
        "task_id": None,
        "instance_id": instance.id,
        "workflow": instance.workflow_id,
        "step": definition.steps[instance.current_step].id,
        "warn_at": instance.warn_at.isoformat() if instance.warn_at else None,
        "expires_at": instance.expires_at.isoformat(),
        "overdue_by_s": round(max((now - instance.expires_at).total_seconds(), 0.0), 3),
    }
    transitions.record_event(session, kind, instance.id, now, None, expires_at=payload["expires_at"],
                             overdue_by_s=payload["overdue_by_s"] if light == RED else None)
    batch.escalate(action, payload)


def scan_sla(now: datetime | None = None, *, batch: int = 1000) -> ScanReport:
    """Record and escalate every warning and breach due at ``now``; re-offer steps whose claim lapsed.

    Safe to run concurrently: each due row is taken by one scanner only. Due rows are
    handled ``batch`` at a time, one transaction each, so the first escalations of a
    burst go out while the rest are still being recorded.
    """
    now = now or utcnow()
    report = ScanReport()
    # saved before the scan's transaction: SQLite has one writer, and this is another one
    escalation_workflow("sla_warning")
    escalation_workflow("sla_violation")
    while True:
        work = _Batch(now, report)
        with transaction() as session:
            tasks = session.execute(
                select(TaskRow, InstanceRow.version).join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
                .where(TaskRow.sla_check_at <= now).order_by(TaskRow.sla_check_at)
                .with_for_update(of=TaskRow, skip_locked=True).limit(batch)
            ).all()
            with session.no_autoflush:
                for task, version in tasks:
                    _advance_task(session, task, version, work)
            instances = session.scalars(
                select(InstanceRow).where(InstanceRow.sla_check_at <= now).order_by(InstanceRow.sla_check_at)
                .with_for_update(skip_locked=True).limit(batch)
            ).all()
            for instance in instances:
                _advance_instance(session, instance, work)
            work.start_escalations(session)
        _apply_policies(work)
        expired = sweep(now=now, limit=batch)
        report.leases_expired += len(expired)
        publish_all(work.dispatches + expired)
        if len(tasks) < batch and len(instances) < batch and len(expired) < batch:
            return report


def breach_now(task_id: str, reason: str) -> None:
    """A push handler overran its SLA (``SoftTimeLimitExceeded``): record the breach, then fail the attempt.

    The breach is recorded and escalated once, whether the scanner or this call sees
    it first. The attempt fails: under ``on_breach: fail`` so does the instance;
    otherwise the step's ``retries`` decide.
    """
    escalation_workflow("sla_violation")  # saved before the transaction: SQLite has one writer
    work = _Batch(utcnow(), ScanReport())
    with transaction() as session:
        found = session.get(TaskRow, task_id)
        if found is None:
            return
        instance = session.get(InstanceRow, found.instance_id, with_for_update=True)
        assert instance is not None
        task = session.get(TaskRow, task_id, with_for_update=True, populate_existing=True)
        if task is None or task.status != TaskStatus.RUNNING.value:
            return
        if task.light != RED:
            kind = light_event("task", task.light, RED)
            task.light, task.sla_check_at = RED, None
            payload = _task_payload("sla_violation", task, work.now)
            transitions.record_event(session, kind, task.instance_id, work.now, task,
                                     expires_at=payload["expires_at"], overdue_by_s=payload["overdue_by_s"],
                                     source="soft_time_limit")
            work.escalate("sla_violation", payload)
            work.start_escalations(session)
        if instance.status == InstanceStatus.RUNNING.value:
            definition, _ = load_definition(session, instance.workflow_id, instance.version)
            policy = definition.steps[task.step_index].on_breach
            dispatch = transitions.fail_open_task(session, task, instance, reason, work.now, retry=policy != "fail")
            if dispatch:
                work.dispatches.append(dispatch)
    publish_all(work.dispatches)
