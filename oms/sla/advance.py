"""One due row's light moved on by the clock, or by a prediction: the event recorded and the escalation queued.

Every move goes through :func:`oms.store.moves.move_light`, which checks it against
the table of light moves and logs its event; yellow and red are escalated
(:mod:`oms.engine.escalations`) in the same transaction. A row whose step or workflow
has an escalation ladder records its lights the same way, but its ladder replaces the
default escalation tasks: its due rungs fire instead (:mod:`oms.sla.ladders`), and its
next check is the earlier of its light's next change and its next rung.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ..engine.escalations import VIOLATION, WARNING, Escalations, instance_payload, task_payload
from ..engine.pauses import resume_row
from ..engine.rungs import instance_check, task_check
from ..model.definitions import Definition
from ..states import CLEARED, FINISHED_TASK, GREEN, PREDICTED, RED, YELLOW, InstanceStatus, Light
from ..store.catalog import load_definition
from ..store.lights import light_at
from ..store.moves import move_light
from ..store.tables import InstanceRow, TaskRow
from .ladders import fire_instance_rungs, fire_task_rungs
from .predict import Change


@dataclass
class ScanReport:
    """What one scan changed."""

    warnings: int = 0
    violations: int = 0
    #: Instance ids of the escalations started (one per warning and per violation).
    escalations: list[str] = field(default_factory=list)
    leases_expired: int = 0
    #: Timers ended (``sleep`` steps whose time had passed).
    timers: int = 0
    #: Rows the scan could not handle: each logged, recorded on the row (``task.scan_failed`` /
    #: ``workflow.scan_failed``) and looked at again later.
    errors: int = 0
    #: Rungs of escalation ladders fired (``task.escalated``, ``workflow.escalated``).
    escalated: int = 0
    #: Notices those rungs wrote to the outbox (sent by the ``oms`` queue's worker, asked for after the scan).
    notices: int = 0

    @property
    def rows(self) -> int:
        """Rows moved on: lights changed, rungs fired, lapsed claims swept, timers ended."""
        return self.warnings + self.violations + self.escalated + self.leases_expired + self.timers


@dataclass
class Batch(Escalations):
    """What one transaction of the scan decided: escalations to start together, policies to apply after.

    Nothing reaches the :class:`ScanReport` until the transaction commits; a row that
    fails is undone (:meth:`mark`, :meth:`undo`) without touching the others.
    """

    errors: int = 0
    escalated: int = 0
    notices: int = 0
    #: ``(task id, instance id, policy, reason)`` of open steps that turned red under ``on_breach: fail | retry``,
    #: or whose ladder's rung applies such a policy.
    breached: list[tuple[str, str, str, str]] = field(default_factory=list)

    def mark(self) -> tuple[int, ...]:
        return (self.warnings, self.violations, self.escalated, self.notices, len(self.started),
                len(self.dispatches), len(self.breached))

    def undo(self, mark: tuple[int, ...]) -> None:
        """Forget what was decided since ``mark`` (its savepoint was rolled back)."""
        self.warnings, self.violations, self.escalated, self.notices, started, dispatches, breached = mark
        del self.started[started:], self.dispatches[dispatches:], self.breached[breached:]
        for payloads in self.pending.values():
            payloads.clear()

    def add_to(self, report: ScanReport) -> None:
        """Count a committed batch in the scan's report."""
        report.warnings += self.warnings
        report.violations += self.violations
        report.errors += self.errors
        report.escalated += self.escalated
        report.notices += self.notices
        report.escalations.extend(self.started)


def advance_task(session: Session, task: TaskRow, version: int, batch: Batch) -> None:
    """Move one due task's light on, record the event and queue its escalation (or fire its ladder's due rungs).

    A step still open when it turns red under ``on_breach: fail | retry`` is noted,
    for the scan to apply once this transaction has committed.
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
    definition, _ = load_definition(session, task.workflow_id, version)
    step = definition.steps[task.step_index]
    moment = min(now, task.finished_at) if finished and task.finished_at else now
    light = light_at(moment, task.warn_at, task.expires_at)
    laddered = step.escalations is not None
    if laddered:
        _laddered_task(session, task, definition, Light(light), finished, batch)
        return
    if light == task.light:  # not due after all (clock moved back?): look again later
        task.sla_check_at = task.warn_at if light == GREEN else task.expires_at
        return
    if light == YELLOW:
        move_light(session, task, YELLOW, now, check_at=None if finished else task.expires_at,
                   warn_at=task.warn_at.isoformat(), expires_at=task.expires_at.isoformat())
        batch.escalate(WARNING, task_payload(WARNING, task, now))
        return
    payload = task_payload(VIOLATION, task, now)
    move_light(session, task, RED, now, check_at=None, expires_at=payload["expires_at"],
               overdue_by_s=payload["overdue_by_s"])
    batch.escalate(VIOLATION, payload)
    if not finished and step.on_breach != "escalate":
        batch.breached.append((task.id, task.instance_id, step.on_breach, "SLA breached"))


def _laddered_task(session: Session, task: TaskRow, definition: Definition, light: Light, finished: bool,
                   batch: Batch) -> None:
    """A due task whose step has a ladder: its light recorded as any other's (a light only gets worse), its due
    rungs fired in place of the default escalation tasks, its next look the earlier of the two."""
    now = batch.now
    if light.rank > Light(task.light).rank:
        payload = task_payload(VIOLATION, task, now)
        move_light(session, task, light, now, check_at=None, expires_at=payload["expires_at"],
                   **({"warn_at": task.warn_at.isoformat()} if light == YELLOW else
                      {"overdue_by_s": payload["overdue_by_s"]}))
        _escalate(batch, WARNING if light == YELLOW else VIOLATION, payload, laddered=True)
        on_breach = definition.steps[task.step_index].on_breach
        if light == RED and not finished and on_breach != "escalate":
            batch.breached.append((task.id, task.instance_id, on_breach, "SLA breached"))
    fire_task_rungs(session, task, definition, batch)
    task.sla_check_at = None if finished else task_check(definition, task)


def advance_instance(session: Session, instance: InstanceRow, batch: Batch) -> None:
    """Move one due instance's own light on (its workflow's ``sla``), record the event and queue its escalation (or
    fire its ladder's due rungs)."""
    now = batch.now
    finished = instance.status != InstanceStatus.RUNNING
    moment = min(now, instance.finished_at) if finished and instance.finished_at else now
    light = light_at(moment, instance.warn_at, instance.expires_at)
    assert instance.expires_at is not None
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    laddered = definition.escalations is not None
    if light == instance.light or (laddered and Light(light).rank < Light(instance.light).rank):
        if laddered:  # due for a rung: its light stays (it only gets worse)
            fire_instance_rungs(session, instance, definition, batch)
            instance.sla_check_at = None if finished else instance_check(definition, instance)
        else:
            instance.sla_check_at = instance.warn_at if light == GREEN else instance.expires_at
        return
    action = WARNING if light == YELLOW else VIOLATION
    payload = instance_payload(action, instance, definition, now)
    check_at = instance.expires_at if light == YELLOW and not finished else None
    move_light(session, instance, Light(light), now, check_at=check_at, expires_at=payload["expires_at"],
               overdue_by_s=payload["overdue_by_s"] if light == RED else None)
    _escalate(batch, action, payload, laddered)
    if laddered:
        fire_instance_rungs(session, instance, definition, batch)
        instance.sla_check_at = None if finished else instance_check(definition, instance)


def _escalate(batch: Batch, action: str, payload: dict[str, Any], laddered: bool) -> None:
    """Queue the default ladder's escalation task; under a ladder of its own, only count the light's move."""
    if not laddered:
        batch.escalate(action, payload)
    elif action == WARNING:
        batch.warnings += 1
    else:
        batch.violations += 1


def apply_prediction(session: Session, task: TaskRow, definition: Definition, change: Change, batch: Batch) -> None:
    """A queued step the topic's pace will make late turns yellow at once (``predicted``); one turned yellow by a
    prediction alone, and now predicted on time, turns green again (``cleared``: never predicted again)."""
    if task.light != (GREEN if change.light == YELLOW else YELLOW):
        return  # the scan moved it on meanwhile
    laddered = definition.steps[task.step_index].escalations is not None
    finish = change.predicted_finish.isoformat()
    task.predicted_finish = change.predicted_finish
    if change.light == GREEN:
        move_light(session, task, GREEN, batch.now, check_at=task.warn_at, because=CLEARED, predicted_finish=finish,
                   **change.inputs)
    else:
        move_light(session, task, YELLOW, batch.now, check_at=task.expires_at, because=PREDICTED, reason=PREDICTED,
                   predicted_finish=finish,
                   warn_at=task.warn_at.isoformat(), expires_at=task.expires_at.isoformat(), **change.inputs)
        _escalate(batch, WARNING, {**task_payload(WARNING, task, batch.now), "reason": PREDICTED,
                                   "predicted_finish": finish, "estimate": change.inputs}, laddered)
    if laddered:  # its next rung may come before the light's next change
        task.sla_check_at = task_check(definition, task)
