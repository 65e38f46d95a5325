"""The engine's Prometheus metrics, computed from the database so that every process reports the same numbers.

Two kinds of figures, each as cheap on a million tasks as on ten:

* **Gauges** read what is open now: steps pending or running, instances pending,
  running or failed (each through a partial index, so finished rows are never
  read), the newest upkeep runs. Finished instances are counted as they finish.
* **Counters and histograms** come from the event log. Counting it on every scrape
  would read it whole; instead each scrape *rolls up* the events recorded since
  the last one (past a watermark, at most :data:`BATCH` per scrape) into
  ``oms_metrics``, and reports that table. Several processes scraping at once take
  turns on the watermark's row; one that finds it taken reports the table as it
  stands. Events younger than :data:`SETTLE` are left for the next scrape, so that
  a transition still committing is not skipped by the watermark.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, case, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..model.definitions import SYSTEM_PREFIX
from ..states import FINISHED_INSTANCE, INSTANCE_MOVES, LIGHTS, EventKind, TaskStatus
from ..store.db import transaction
from ..store.lights import seen_rank
from ..store.runs import RECONCILE, SCAN, last_run
from ..store.tables import UNFINISHED_INSTANCES, EventRow, InstanceRow, MetricRow, TaskRow
from .watermarks import BATCH, SETTLE, WATERMARK, settled, watermark
from .watermarks import labels as _labels

__all__ = ["BATCH", "SETTLE", "WATERMARK", "Snapshot", "roll_up", "snapshot"]

#: Upper bounds of the histograms' buckets, in seconds: from a fast handler to a two-day SLA.
BUCKETS = (0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0, 172_800.0)

#: Counter (without ``_total``) -> the events it counts.
COUNTERS: dict[str, tuple[str, ...]] = {
    "oms_steps_done": (EventKind.TASK_DONE,),
    "oms_steps_failed": (EventKind.TASK_FAILED,),
    "oms_steps_retried": (EventKind.TASK_RETRIED,),
    "oms_sla_breaches": (EventKind.TASK_SLA_VIOLATED, EventKind.WORKFLOW_SLA_VIOLATED),
    "oms_sla_warnings": (EventKind.TASK_SLA_WARNING, EventKind.WORKFLOW_SLA_WARNING),
    "oms_lease_expiries": (EventKind.TASK_LEASE_EXPIRED,),
    "oms_redispatches": (EventKind.TASK_REDISPATCHED,),
    "oms_signals_received": (EventKind.SIGNAL_RECEIVED,),
    "oms_claims_released": (EventKind.TASK_RELEASED,),
    "oms_reassignments": (EventKind.TASK_REASSIGNED,),
}
#: What each counter says, for ``# HELP``.
HELP = {
    "oms_steps_done": "Step attempts completed.",
    "oms_steps_failed": "Step attempts failed (each retry's failure too).",
    "oms_steps_retried": "Step attempts offered again after a failure.",
    "oms_sla_breaches": "SLA breaches recorded (steps and whole workflows).",
    "oms_sla_warnings": "SLA warnings recorded (yellow lights).",
    "oms_escalations": "Escalations started (instances of the engine's oms.sla_* and oms.escalation.* workflows).",
    "oms_workflows_finished": "Instances that ended, by the status they ended in (done, failed, cancelled).",
    "oms_lease_expiries": "Claims that lapsed (dead workers, pull leases run out, claims given back).",
    "oms_redispatches": "Steps the reconciler published again after their message was lost.",
    "oms_signals_received": "Signals received for waiting steps (taken at once, or kept until the step is ready).",
    "oms_claims_released": "People's claims on human steps given back (released, reassigned, or the person "
                            "disabled).",
    "oms_reassignments": "Human steps given new candidates by a supervisor.",
    "oms_rungs_fired": "Rungs of escalation ladders fired, by rung (1: the first; step empty: the workflow's own "
                       "ladder).",
}
#: The events of a ladder's rung firing, counted by rung.
ESCALATED = (EventKind.TASK_ESCALATED, EventKind.WORKFLOW_ESCALATED)
_BY_KIND = {kind: name for name, kinds in COUNTERS.items() for kind in kinds}
_TIMED = (EventKind.TASK_DONE, EventKind.TASK_FAILED)
#: Instances the gauge counts: finished ones are counted by ``oms_workflows_finished_total`` instead (the
#: partial index's own condition, as text, so that it serves prepared statements too).
UNFINISHED = text(UNFINISHED_INSTANCES)
#: Events that end an instance, by the status it ends in.
FINISHED = {kind: new.value for (_, new), kind in INSTANCE_MOVES.items() if new in FINISHED_INSTANCE}


@dataclass
class Snapshot:
    """Everything ``/metrics`` reports, read in one go."""

    #: ``(workflow, step, light) -> open steps``.
    open_steps: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: ``(workflow, status) -> instances`` pending, running or failed.
    instances: dict[tuple[str, str], int] = field(default_factory=dict)
    #: ``(sample name, labels) -> value`` of the rolled-up counters and histograms.
    rolled: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    last_scan: datetime | None = None
    last_reconcile: datetime | None = None


def _observe(deltas: dict[tuple[str, str], float], metric: str, workflow: str, step: str, seconds: float) -> None:
    for bound in BUCKETS:
        if seconds <= bound:
            deltas[(f"{metric}_bucket", _labels(workflow=workflow, step=step, le=repr(bound)))] += 1
            break
    else:
        deltas[(f"{metric}_bucket", _labels(workflow=workflow, step=step, le="+Inf"))] += 1
    deltas[(f"{metric}_count", _labels(workflow=workflow, step=step))] += 1
    deltas[(f"{metric}_sum", _labels(workflow=workflow, step=step))] += seconds


def _new_events(session: Session, after: int, now: datetime) -> Iterator[Any]:
    query = (
        select(EventRow.id, EventRow.kind, EventRow.at, EventRow.step_id, InstanceRow.workflow_id,
               TaskRow.ready_at, TaskRow.started_at, TaskRow.finished_at,
               case((EventRow.kind.in_(ESCALATED), EventRow.data["rung"].as_integer()), else_=None).label("rung"))
        .join(InstanceRow, InstanceRow.id == EventRow.instance_id)
        .outerjoin(TaskRow, (TaskRow.id == EventRow.task_id) & EventRow.kind.in_(_TIMED))
        .where(EventRow.id > after)
        .order_by(EventRow.id)
        .limit(BATCH)
    )
    yield from settled(session.execute(query), now)


def roll_up(now: datetime | None = None) -> int:
    """Add the events recorded since the last roll-up to ``oms_metrics``; return how many were read.

    Two processes making the very first roll-up at once both insert the watermark:
    the loser rolls up nothing this time (the winner did).
    """
    try:
        return _roll_up(now or datetime.now(UTC))
    except IntegrityError:
        return 0


def _roll_up(now: datetime) -> int:
    with transaction() as session:
        mark = watermark(session)
        if mark is None:
            return 0
        deltas: dict[tuple[str, str], float] = defaultdict(float)
        last, seen = int(mark.value), 0
        for row in _new_events(session, last, now):
            last, seen = row.id, seen + 1
            workflow = row.workflow_id
            if row.kind == EventKind.WORKFLOW_STARTED and workflow.startswith(SYSTEM_PREFIX):
                deltas[("oms_escalations_total", _labels(workflow=workflow))] += 1
            if row.kind in ESCALATED:
                deltas[("oms_rungs_fired_total", _labels(workflow=workflow, step=row.step_id or "",
                                                         rung=str(row.rung)))] += 1
            if row.kind in FINISHED:
                deltas[("oms_workflows_finished_total", _labels(workflow=workflow, status=FINISHED[row.kind]))] += 1
            name = _BY_KIND.get(row.kind)
            if name is None:
                continue
            labels = _labels(workflow=workflow, step=row.step_id or "")
            deltas[(f"{name}_total", labels)] += 1
            # a waiting step or a timer ends from pending, claimed by nobody: no queue wait nor run time to observe;
            # a person's step is timed from its last claim (a released claim was waiting, not running)
            if row.kind in _TIMED and row.started_at is not None:
                _observe(deltas, "oms_queue_wait_seconds", workflow, row.step_id or "",
                         (row.started_at - row.ready_at).total_seconds())
                if row.finished_at is not None:
                    _observe(deltas, "oms_run_seconds", workflow, row.step_id or "",
                             (row.finished_at - row.started_at).total_seconds())
        if not seen:
            return 0
        stored = {(r.metric, r.labels): r for r in session.scalars(
            select(MetricRow).where(MetricRow.metric.in_({metric for metric, _ in deltas})))}
        for key, delta in deltas.items():
            row = stored.get(key)
            if row is None:
                session.add(MetricRow(metric=key[0], labels=key[1], value=delta))
            else:
                row.value += delta
        mark.value = float(last)
        return seen


def open_steps(status: TaskStatus, now: datetime) -> Select[tuple[str, str, int, int]]:
    """Tasks of ``status`` by workflow, step and light (as a rank): served by that status's partial index."""
    light = seen_rank(TaskRow.light, TaskRow.warn_at, TaskRow.expires_at, TaskRow.finished_at, now)
    return (select(TaskRow.workflow_id, TaskRow.step_id, light, func.count())
            .where(text(f"status = '{status.value}'")).group_by(TaskRow.workflow_id, TaskRow.step_id, light))


def unfinished_instances() -> Select[tuple[str, str, int]]:
    """Instances pending, running or failed by workflow and status: served by ``ix_oms_instances_unfinished``."""
    return (select(InstanceRow.workflow_id, InstanceRow.status, func.count()).where(UNFINISHED)
            .group_by(InstanceRow.workflow_id, InstanceRow.status))


def snapshot(now: datetime | None = None) -> Snapshot:
    """Roll up the new events, then read every figure."""
    now = now or datetime.now(UTC)
    roll_up(now)
    found = Snapshot()
    with transaction() as session:
        for status in (TaskStatus.PENDING, TaskStatus.RUNNING):  # each through its partial index
            for workflow, step, rank, count in session.execute(open_steps(status, now)):
                key = (workflow, step, LIGHTS[rank])
                found.open_steps[key] = found.open_steps.get(key, 0) + count
        for workflow, status, count in session.execute(unfinished_instances()):
            found.instances[(workflow, status)] = count
        for row in session.scalars(select(MetricRow).where(MetricRow.metric != WATERMARK)):
            found.rolled[(row.metric, tuple(sorted(json.loads(row.labels).items())))] = row.value
    scan, reconcile = last_run(SCAN), last_run(RECONCILE)
    found.last_scan = scan.finished_at if scan else None
    found.last_reconcile = reconcile.finished_at if reconcile else None
    return found
