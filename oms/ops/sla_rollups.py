"""The SLA report's rollups: the event log added up per UTC day, workflow, step and calendar (``oms_sla_rollups``).

As ``/metrics`` does (:mod:`oms.ops.watermarks`), each pass reads only the events
recorded since the last one, so a report of a month of a million steps reads a few
hundred rows, not the log; and the rows stay when ``oms prune`` deletes the events
(:func:`oms.ops.retention.prune` catches the rollups up first). What a pass adds:

* ``task.done``: a step finished, on the UTC day it finished: within its SLA if it
  finished before its deadline (a step finished at its deadline is late); its queue
  wait (ready to its last claim), run time (claim to finished, less any paused
  time) and total (ready to finished, less paused time), and for a late one its time
  over the deadline, each in its calendar's working time (wall time without one),
  into log-spaced histograms (:mod:`oms.ops.histograms`); the ten worst kept (most
  time over, then longest);
* ``workflow.done``: the same for the instance against the workflow's own SLA (the
  row whose ``step_id`` is ``""``), from its start;
* ``task.sla_violated`` / ``workflow.sla_violated``: a breach the scanner recorded,
  on the day its deadline passed and at the local hour it did (for the chart of
  breaches by hour of the working day), whether the step finished since or not.

The engine's own workflows (escalations, ``oms.*``) are not rolled up.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..model.deadlines import NO_DEADLINE, paused_time
from ..model.definitions import SYSTEM_PREFIX
from ..model.worktime import Schedule
from ..states import EventKind, StepKind
from ..store.catalog import schedule
from ..store.db import transaction
from ..store.tables import EventRow, InstanceRow, SlaRollupRow, TaskRow
from . import histograms
from .watermarks import BATCH, rolled_up_to, settled, watermark

#: This rollup's watermark (``oms_metrics``, ``_watermark{of="sla_rollups"}``).
ROLLUP = "sla_rollups"
#: Finished steps (or instances) kept per row, the worst: the report shows the worst of the rows it merges.
WORST = 10
#: The kind of the workflow's own row.
WORKFLOW = "workflow"
#: The events a pass adds up; the others only move the watermark on.
KINDS = (EventKind.TASK_DONE, EventKind.TASK_SLA_VIOLATED, EventKind.WORKFLOW_DONE, EventKind.WORKFLOW_SLA_VIOLATED)
_TASK_KINDS = (EventKind.TASK_DONE, EventKind.TASK_SLA_VIOLATED)

Key = tuple[date, str, str, str]


@dataclass
class Tally:
    """A row's figures: what one pass adds to it, or rows added up (:func:`oms.ops.sla_report.sla_report`)."""

    kind: str
    finished: int = 0
    within_sla: int = 0
    breaches: int = 0
    over_s: float = 0.0
    sla_s: float | None = None
    histograms: dict[str, histograms.Histogram] = field(default_factory=dict)
    breach_hours: dict[str, int] = field(default_factory=dict)
    #: The worst finished, worst first (at most :data:`WORST` once :meth:`absorb` or :func:`worst` has run).
    worst: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, figure: str, seconds: float) -> None:
        histograms.add(self.histograms.setdefault(figure, {}), seconds)

    def absorb(self, other: Tally | SlaRollupRow) -> Tally:
        """Add another tally's, or a stored row's, figures to this one; return it."""
        self.kind = other.kind
        self.finished += other.finished
        self.within_sla += other.within_sla
        self.breaches += other.breaches
        self.over_s += other.over_s
        if other.sla_s is not None:
            self.sla_s = max(self.sla_s or 0.0, other.sla_s)
        for name, counts in (other.histograms or {}).items():
            histograms.merge(self.histograms.setdefault(name, {}), counts)
        histograms.merge(self.breach_hours, other.breach_hours or {})
        self.worst = worst([*self.worst, *(other.worst or [])])
        return self

    @property
    def share(self) -> float | None:
        """The share of the finished within their SLA (``None``: none finished, or no SLA to be within)."""
        return self.within_sla / self.finished if self.finished and self.sla_s is not None else None


#: The columns of ``oms_sla_rollups`` a tally holds.
FIGURES = ("kind", "finished", "within_sla", "breaches", "over_s", "sla_s", "histograms", "breach_hours", "worst")


def _working(hours: Schedule | None, start: datetime, end: datetime) -> float:
    """Seconds of working time (wall time without a calendar) from ``start`` to ``end`` (0 if not after it)."""
    return paused_time(hours, start, end).total_seconds() if end > start else 0.0


def _paused(hours: Schedule | None, row: Any) -> float:
    """The working time the step's clock was paused in all (a pause still on when it finished counts to then)."""
    last = _working(hours, row.paused_at, row.finished_at) if row.paused_at is not None else 0.0
    return (row.paused_s or 0.0) + last


def _hour(hours: Schedule | None, moment: datetime) -> str:
    return str((moment.astimezone(hours.zone) if hours is not None else moment.astimezone(UTC)).hour)


def _finished(tally: Tally, hours: Schedule | None, row: Any, *, ready: datetime, started: datetime | None,
              finished: datetime, expires: datetime | None, paused: float, task_id: str | None) -> None:
    """Count one step (or instance) finished."""
    deadline = expires if expires is not None and expires != NO_DEADLINE else None
    tally.finished += 1
    if started is not None:  # working time adds up: the total is the wait and the run (one calendar walk fewer)
        waited, ran = _working(hours, ready, started), _working(hours, started, finished)
        tally.observe("queue_wait", waited)
        tally.observe("run", max(ran - paused, 0.0))
        total = max(waited + ran - paused, 0.0)
    else:
        total = max(_working(hours, ready, finished) - paused, 0.0)
    tally.observe("total", total)
    over = 0.0
    if deadline is None or finished < deadline:
        tally.within_sla += 1
    else:
        over = _working(hours, deadline, finished)
        tally.over_s += over
        tally.observe("over", over)
    if deadline is not None and tally.sla_s is None:  # once per row and pass: the working time is not free
        tally.sla_s = max(_working(hours, ready, deadline) - paused, 0.0)
    tally.worst.append({"instance_id": row.instance_id, "business_key": row.business_key, "task_id": task_id,
                        "finished_at": finished.astimezone(UTC).isoformat(), "total_s": round(total, 3),
                        "over_s": round(over, 3)})
    if len(tally.worst) >= 8 * WORST:  # trimmed now and then, not on every step
        tally.worst = worst(tally.worst)


def _breach(tally: Tally, hours: Schedule | None, expires: datetime) -> None:
    tally.breaches += 1
    hour = _hour(hours, expires)
    tally.breach_hours[hour] = tally.breach_hours.get(hour, 0) + 1


def _events(session: Session, after: int, now: datetime) -> Any:
    ours = EventRow.kind.in_(KINDS)
    query = (
        select(EventRow.id, EventRow.kind, EventRow.at, EventRow.instance_id, EventRow.task_id, EventRow.step_id,
               InstanceRow.workflow_id, InstanceRow.business_key, InstanceRow.calendar_id.label("instance_calendar"),
               InstanceRow.created_at, InstanceRow.finished_at.label("instance_finished"),
               InstanceRow.expires_at.label("instance_expires"),
               TaskRow.topic, TaskRow.calendar_id, TaskRow.ready_at, TaskRow.started_at, TaskRow.finished_at,
               TaskRow.expires_at, TaskRow.paused_s, TaskRow.paused_at)
        .outerjoin(InstanceRow, (InstanceRow.id == EventRow.instance_id) & ours)
        .outerjoin(TaskRow, (TaskRow.id == EventRow.task_id) & EventRow.kind.in_(_TASK_KINDS))
        .where(EventRow.id > after)
        .order_by(EventRow.id)
        .limit(BATCH)
    )
    return settled(session.execute(query), now)


def _tally(session: Session, after: int, now: datetime, tallies: dict[Key, Tally]) -> tuple[int, int]:
    """Add the settled events past ``after`` to ``tallies``; return the last id read and how many were read."""
    last, seen = after, 0
    for row in _events(session, after, now):
        last, seen = row.id, seen + 1
        if row.workflow_id is None or row.workflow_id.startswith(SYSTEM_PREFIX):
            continue  # not an event this rollup adds up (or its instance is gone)
        if row.kind in _TASK_KINDS:
            if row.ready_at is None:
                continue  # its task row is gone
            hours = schedule(row.calendar_id)
            moment = row.finished_at if row.kind == EventKind.TASK_DONE else row.expires_at
            if moment is None:
                continue
            key = (moment.astimezone(UTC).date(), row.workflow_id, row.step_id or "", row.calendar_id or "")
            tally = tallies.setdefault(key, Tally(StepKind.of_topic(row.topic).value))
            if row.kind == EventKind.TASK_DONE:
                _finished(tally, hours, row, ready=row.ready_at, started=row.started_at, finished=row.finished_at,
                          expires=row.expires_at, paused=_paused(hours, row), task_id=row.task_id)
            else:
                _breach(tally, hours, row.expires_at)
            continue
        hours = schedule(row.instance_calendar)
        moment = row.instance_finished if row.kind == EventKind.WORKFLOW_DONE else row.instance_expires
        if moment is None:
            continue
        key = (moment.astimezone(UTC).date(), row.workflow_id, "", row.instance_calendar or "")
        tally = tallies.setdefault(key, Tally(WORKFLOW))
        if row.kind == EventKind.WORKFLOW_DONE:
            _finished(tally, hours, row, ready=row.created_at, started=None, finished=row.instance_finished,
                      expires=row.instance_expires, paused=0.0, task_id=None)
        else:
            _breach(tally, hours, row.instance_expires)
    return last, seen


def worst(entries: list[dict[str, Any]], keep: int = WORST) -> list[dict[str, Any]]:
    """The ``keep`` worst of some finished steps (or instances): most time over, then longest."""
    return heapq.nlargest(keep, entries, key=lambda e: (e["over_s"], e["total_s"]))


def _store(session: Session, tallies: dict[Key, Tally]) -> None:
    days = {key[0] for key in tallies}
    workflows = {key[1] for key in tallies}
    stored = {(r.day, r.workflow_id, r.step_id, r.calendar_id): r for r in session.scalars(
        select(SlaRollupRow).where(SlaRollupRow.day.in_(days), SlaRollupRow.workflow_id.in_(workflows)))}
    for key, tally in tallies.items():
        row = stored.get(key)
        if row is None:
            row = SlaRollupRow(day=key[0], workflow_id=key[1], step_id=key[2], calendar_id=key[3])
            session.add(row)
            total = tally.absorb(Tally(tally.kind))
        else:
            total = Tally(row.kind).absorb(row).absorb(tally)
        for name in FIGURES:  # new objects: the JSON columns see the change
            setattr(row, name, getattr(total, name))


def roll_up(now: datetime | None = None) -> int:
    """Add the events recorded since the last pass (at most :data:`~oms.ops.watermarks.BATCH`) to the rollups;
    return how many events were read (0 too while another process rolls up)."""
    try:
        return _roll_up(now or datetime.now(UTC))
    except IntegrityError:  # two processes made the very first pass at once: the other one did it
        return 0


def _roll_up(now: datetime) -> int:
    with transaction() as session:
        mark = watermark(session, ROLLUP)
        if mark is None:
            return 0
        tallies: dict[Key, Tally] = {}
        last, seen = _tally(session, int(mark.value), now, tallies)
        if not seen:
            return 0
        _store(session, tallies)
        mark.value = float(last)
        return seen


def catch_up(now: datetime | None = None) -> int:
    """Roll up every settled event not rolled up yet, a batch per transaction; return how many were read."""
    read = 0
    while True:
        seen = roll_up(now)
        read += seen
        if seen < BATCH:
            return read


def rolled_up(session: Session) -> int:
    """The id of the last event the rollups hold."""
    return rolled_up_to(session, ROLLUP)
