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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..celery.dispatch import Dispatch, publish_all
from ..engine import control as transitions
from ..engine.door import Task, sweep, utcnow
from ..engine.pauses import resume_row
from ..model.definitions import Workflow, ensure_saved, load_definition, system_workflow
from ..settings import get_settings
from ..states import (
    CLEARED,
    FINISHED_TASK,
    GREEN,
    OPEN_TASK,
    PREDICTED,
    RED,
    TASK_SCAN_FAILED,
    WORKFLOW_SCAN_FAILED,
    YELLOW,
    InstanceStatus,
    TaskStatus,
    light_event,
)
from ..store import runs
from ..store.db import TRANSIENT, retrying, transaction
from ..store.lights import light_at
from ..store.tables import EventRow, InstanceRow, TaskRow
from . import predict

logger = logging.getLogger(__name__)


@dataclass
class ScanReport:
    """What one scan changed."""

    warnings: int = 0
    violations: int = 0
    #: Instance ids of the escalations started (one per warning and per violation).
    escalations: list[str] = field(default_factory=list)
    leases_expired: int = 0
    #: Rows the scan could not handle: each logged, recorded on the row (``task.scan_failed`` /
    #: ``workflow.scan_failed``) and looked at again after :data:`RETRY_FAILED_ROW`.
    errors: int = 0

    @property
    def rows(self) -> int:
        """Rows moved on: lights changed, lapsed claims swept."""
        return self.warnings + self.violations + self.leases_expired


#: When the scanner looks again at a row it could not handle.
RETRY_FAILED_ROW = timedelta(minutes=5)


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
    """What one transaction of the scan decided: escalations to start together, chains to publish after.

    Nothing reaches the :class:`ScanReport` until the transaction commits; a row that
    fails is undone (:meth:`mark`, :meth:`undo`) without touching the others.
    """

    now: datetime
    warnings: int = 0
    violations: int = 0
    errors: int = 0
    escalations: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"sla_warning": [], "sla_violation": []}
    )
    #: Instance ids of the escalations started.
    started: list[str] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    #: ``(task id, instance id, policy)`` of open steps that turned red under ``on_breach: fail | retry``.
    breached: list[tuple[str, str, str]] = field(default_factory=list)

    def escalate(self, action: str, payload: dict[str, Any]) -> None:
        if action == "sla_warning":
            self.warnings += 1
        else:
            self.violations += 1
        self.escalations[action].append(payload)

    def start_escalations(self, session: Session) -> None:
        """One bulk insert per action: a burst of thousands of breaches costs a few statements."""
        for action, payloads in self.escalations.items():
            if not payloads:  # callers save only the definitions they use before the transaction:
                continue      # looking up another here could be a second writer, which SQLite blocks
            workflow, version = escalation_workflow(action)
            started = transitions.start_instances(session, workflow, version, payloads, self.now)
            self.started.extend(d.instance_id for d in started)
            self.dispatches.extend(started)
            payloads.clear()

    def mark(self) -> tuple[int, ...]:
        return (self.warnings, self.violations, len(self.started), len(self.dispatches), len(self.breached))

    def undo(self, mark: tuple[int, ...]) -> None:
        """Forget what was decided since ``mark`` (its savepoint was rolled back)."""
        self.warnings, self.violations, started, dispatches, breached = mark
        del self.started[started:], self.dispatches[dispatches:], self.breached[breached:]
        for payloads in self.escalations.values():
            payloads.clear()

    def add_to(self, report: ScanReport) -> None:
        """Count a committed batch in the scan's report."""
        report.warnings += self.warnings
        report.violations += self.violations
        report.errors += self.errors
        report.escalations.extend(self.started)


def _row_failed(session: Session, row: TaskRow | InstanceRow, error: BaseException, work: _Batch) -> None:
    """Log a row the scan could not handle, record the error on it, and look at it again later."""
    what = "task" if isinstance(row, TaskRow) else "workflow instance"
    logger.error("SLA scan: %s %s failed (%s: %s); the scan goes on, and looks at it again in %s", what, row.id,
                 type(error).__name__, error, RETRY_FAILED_ROW, exc_info=error)
    work.errors += 1
    detail = f"{type(error).__name__}: {error}"[:1000]
    try:
        with session.begin_nested():
            row.sla_check_at = work.now + RETRY_FAILED_ROW
            if isinstance(row, TaskRow) and not _recorded(session, row.id, detail):
                transitions.record_event(session, TASK_SCAN_FAILED, row.instance_id, work.now, row, error=detail)
            elif isinstance(row, InstanceRow) and not _recorded(session, None, detail, row.id):
                transitions.record_event(session, WORKFLOW_SCAN_FAILED, row.id, work.now, None, error=detail)
            session.flush()
    except TRANSIENT:
        raise
    except Exception:  # not even the error could be recorded: it stays due, and the next scan tries again
        logger.exception("SLA scan: could not record the failure of %s %s", what, row.id)


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
    if task.paused_at is not None:  # due only when its max_pause ran out: its clock runs again
        if finished:
            task.sla_check_at = None
            return
        resume_row(session, task, load_definition(session, task.workflow_id, version)[0], now)
        if task.sla_check_at is None or task.sla_check_at > now:
            return
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


def _recorded(session: Session, task_id: str | None, detail: str, instance_id: str | None = None) -> bool:
    """Whether the row's newest event already records this failure: each scan logs it, the event log says it once."""
    query = select(EventRow.kind, EventRow.data).order_by(EventRow.id.desc()).limit(1)
    query = query.where(EventRow.task_id == task_id) if task_id else query.where(
        EventRow.instance_id == instance_id, EventRow.task_id.is_(None))
    latest = session.execute(query).first()
    return latest is not None and latest.kind.endswith(".scan_failed") and latest.data.get("error") == detail


def _apply_policies(batch: _Batch) -> None:
    """``on_breach``: ``fail`` and ``retry`` end the breached attempt, one transaction each.

    Run after the scan's transaction, which holds task rows only: here the instance
    is locked first, then its task, the order every transition takes. One that fails
    is logged and recorded on its task; the others go on.
    """
    for task_id, instance_id, policy in batch.breached:
        try:
            dispatch = retrying(partial(_end_breached, task_id, instance_id, policy, batch.now),
                                "applying a breach policy")
        except TRANSIENT:
            raise
        except Exception as exc:
            batch.errors += 1
            logger.error("SLA scan: the breach policy %r of task %s failed (%s: %s); the scan goes on", policy,
                         task_id, type(exc).__name__, exc, exc_info=exc)
            _record_failure(task_id, f"on_breach {policy}: {type(exc).__name__}: {exc}", batch.now)
            continue
        if dispatch:
            batch.dispatches.append(dispatch)
    batch.breached.clear()


def _record_failure(task_id: str, detail: str, now: datetime) -> None:
    """Record ``task.scan_failed`` on a task, in a transaction of its own (best effort: the error is logged)."""
    detail = detail[:1000]
    try:
        with transaction() as session:
            task = session.get(TaskRow, task_id)
            if task is not None and not _recorded(session, task_id, detail):
                transitions.record_event(session, TASK_SCAN_FAILED, task.instance_id, now, task, error=detail)
    except Exception:
        logger.exception("SLA scan: could not record the failure of task %s", task_id)


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


def _scan_batch(work: _Batch, batch: int, *, isolated: bool) -> tuple[int, int]:
    """Advance up to ``batch`` due tasks and instances in one transaction; return how many of each were due.

    ``isolated``: each row in a savepoint of its own, flushed there, so that a row
    that fails is rolled back, recorded and deferred while the others commit. The
    scan first tries a batch without (a savepoint costs round trips), and only a
    batch that failed is done again this way.
    """
    now = work.now
    with transaction() as session:
        tasks = session.execute(
            select(TaskRow, InstanceRow.version).join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
            .where(TaskRow.sla_check_at <= now).order_by(TaskRow.sla_check_at)
            .with_for_update(of=TaskRow, skip_locked=True).limit(batch)
        ).all()
        with session.no_autoflush:
            for task, version in tasks:
                _advance(session, work, task, isolated, partial(_advance_task, session, task, version, work))
        instances = session.scalars(
            select(InstanceRow).where(InstanceRow.sla_check_at <= now).order_by(InstanceRow.sla_check_at)
            .with_for_update(skip_locked=True).limit(batch)
        ).all()
        for instance in instances:
            _advance(session, work, instance, isolated, partial(_advance_instance, session, instance, work))
        work.start_escalations(session)
    return len(tasks), len(instances)


def _advance(session: Session, work: _Batch, row: TaskRow | InstanceRow, isolated: bool,
             advance: Callable[[], None]) -> None:
    if not isolated:
        advance()
        return
    mark = work.mark()
    try:
        with session.begin_nested():
            advance()
            work.start_escalations(session)
            session.flush()
    except TRANSIENT:
        raise
    except Exception as exc:
        work.undo(mark)
        _row_failed(session, row, exc, work)


def scan_sla(now: datetime | None = None, *, batch: int = 1000) -> ScanReport:
    """Record and escalate every warning and breach due at ``now``; re-offer steps whose claim lapsed.

    Safe to run concurrently: each due row is taken by one scanner only. Due rows are
    handled ``batch`` at a time, one transaction each, so the first escalations of a
    burst go out while the rest are still being recorded. No row can stop the scan:
    one that fails is logged, recorded on the row and looked at again later
    (``ScanReport.errors``). Each scan is recorded (:mod:`oms.runs`), so a missing
    scanner is noticed.
    """
    started = runs.utcnow()
    now = now or utcnow()
    report = ScanReport()
    # saved before the scan's transaction: SQLite has one writer, and this is another one
    escalation_workflow("sla_warning")
    escalation_workflow("sla_violation")
    while True:
        work = _Batch(now)
        try:
            due = _scan_batch(work, batch, isolated=False)
        except TRANSIENT:
            raise
        except Exception as exc:
            logger.warning("SLA scan: a batch failed (%s: %s); doing it again row by row", type(exc).__name__, exc)
            work = _Batch(now)
            due = _scan_batch(work, batch, isolated=True)
        _apply_policies(work)
        work.add_to(report)
        expired = sweep(now=now, limit=batch, on_error=partial(_sweep_failed, report, now))
        report.leases_expired += len(expired)
        publish_all(work.dispatches + expired)
        if max(*due, len(expired)) < batch:
            break
    try:
        _predict(now, report)
    except TRANSIENT:
        raise
    except Exception as exc:  # a prediction is advice: it never stops the scan
        report.errors += 1
        logger.error("SLA scan: the prediction failed (%s: %s); the scan goes on", type(exc).__name__, exc,
                     exc_info=exc)
    runs.record(runs.SCAN, started, report.rows, errors=report.errors, details=_counts(report))
    return report


def _predict(now: datetime, report: ScanReport) -> None:
    """Turn yellow the queued steps a topic's pace will make late, and green those it no longer will (once)."""
    work = _Batch(now)
    with transaction() as session:
        found = {change.task_id: change for change in predict.changes(session, now)}
        ids = list(found)
        for start in range(0, len(ids), 1000):
            rows = session.scalars(
                select(TaskRow).where(TaskRow.id.in_(ids[start:start + 1000]),
                                      TaskRow.status == TaskStatus.PENDING.value)
                .with_for_update(skip_locked=True)
            ).all()
            for task in rows:
                _apply_prediction(session, task, found[task.id], work)
        work.start_escalations(session)
    work.add_to(report)
    publish_all(work.dispatches)


def _apply_prediction(session: Session, task: TaskRow, change: predict.Change, work: _Batch) -> None:
    if task.light != (GREEN if change.light == YELLOW else YELLOW):
        return  # the scan moved it on meanwhile
    kind = light_event("task", task.light, change.light)
    finish = change.predicted_finish.isoformat()
    task.light, task.predicted_finish = change.light, change.predicted_finish
    if change.light == GREEN:
        task.light_reason, task.sla_check_at = CLEARED, task.warn_at
        transitions.record_event(session, kind, task.instance_id, work.now, task, predicted_finish=finish,
                                 **change.inputs)
        return
    task.light_reason, task.sla_check_at = PREDICTED, task.expires_at
    transitions.record_event(session, kind, task.instance_id, work.now, task, reason=PREDICTED,
                             predicted_finish=finish, warn_at=task.warn_at.isoformat(),
                             expires_at=task.expires_at.isoformat(), **change.inputs)
    work.escalate("sla_warning", {**_task_payload("sla_warning", task, work.now), "reason": PREDICTED,
                                  "predicted_finish": finish, "estimate": change.inputs})


def _sweep_failed(report: ScanReport, now: datetime, task: Task, error: BaseException) -> None:
    report.errors += 1
    _record_failure(task.id, f"lease sweep: {type(error).__name__}: {error}", now)


def _counts(report: ScanReport) -> dict[str, Any]:
    return {"warnings": report.warnings, "violations": report.violations, "escalations": len(report.escalations),
            "leases_expired": report.leases_expired, "errors": report.errors}


def breach_now(task_id: str, reason: str) -> None:
    """A push handler overran its SLA (``SoftTimeLimitExceeded``): record the breach, then fail the attempt.

    The breach is recorded and escalated once, whether the scanner or this call sees
    it first. The attempt fails: under ``on_breach: fail`` so does the instance;
    otherwise the step's ``retries`` decide.
    """
    escalation_workflow("sla_violation")  # saved before the transaction: SQLite has one writer
    work = _Batch(utcnow())
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
