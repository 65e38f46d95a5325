"""When a row's escalation ladder fires next: the other half of ``sla_check_at``.

A row's next check is the earlier of its light's next change and its ladder's next
rung (:func:`oms.model.deadlines.next_check`), so the scan still reads only due rows
through its partial index. Every place that moves a clock (a start, a pause ended, a
calendar changed, a light moved) asks here, with the row's definition at hand.
"""

from __future__ import annotations

from datetime import datetime

from ..model.deadlines import next_check
from ..model.definitions import Definition
from ..model.ladders import Rung, Span, next_rung
from ..states import OPEN_TASK, InstanceStatus
from ..store.catalog import schedule
from ..store.tables import InstanceRow, TaskRow


def task_ladder(definition: Definition, task: TaskRow) -> tuple[list[Rung], Span] | None:
    """The ladder of a task's step and its clock (``None``: the step has the default ladder, or no SLA)."""
    step = definition.steps[task.step_index]
    if step.escalations is None or step.sla is None:
        return None
    return step.escalations, Span(task.ready_at, task.expires_at, step.sla, schedule(task.calendar_id),
                                  task.paused_s or 0.0)


def instance_ladder(definition: Definition, instance: InstanceRow) -> tuple[list[Rung], Span] | None:
    """The ladder of an instance's workflow and its own clock (``None``: the default ladder, or no SLA)."""
    if definition.escalations is None or definition.sla is None or instance.expires_at is None:
        return None
    return definition.escalations, Span(instance.created_at, instance.expires_at, definition.sla,
                                        schedule(instance.calendar_id))


def task_check(definition: Definition, task: TaskRow) -> datetime | None:
    """When the scanner looks at an open task next: its light's next change or its next rung, the earlier."""
    ladder = task_ladder(definition, task) if task.status in OPEN_TASK else None
    rung_at = next_rung(ladder[0], task.rung, ladder[1]) if ladder else None
    return next_check(task.light, task.warn_at, task.expires_at, rung_at)


def instance_check(definition: Definition, instance: InstanceRow) -> datetime | None:
    """When the scanner looks at a running instance next: its own light's next change or its next rung."""
    if instance.warn_at is None or instance.expires_at is None:
        return None
    ladder = instance_ladder(definition, instance) if instance.status == InstanceStatus.RUNNING else None
    rung_at = next_rung(ladder[0], instance.rung, ladder[1]) if ladder else None
    return next_check(instance.light, instance.warn_at, instance.expires_at, rung_at)
