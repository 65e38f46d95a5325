"""Retention: delete finished instances with their tasks, events and notices, in short batches (``oms prune``).

Each batch is one short transaction: it takes up to ``batch`` instances finished
before the cutoff, oldest first, locking them with ``SKIP LOCKED`` (an instance
another transaction holds is left for the next run), then deletes their tasks,
their events and the instances, in the engine's lock order (instance, then its
tasks). Running instances are never touched, and nothing waits on a hot row.

The SLA report's rollups (:mod:`oms.ops.sla_rollups`) are caught up first (a cutoff
of just now waits the two seconds an event takes to settle), and an instance with an
event they do not hold yet is left for the next run: a report reads the same after a
prune as before it.

Then the notices' outbox: a notice written before the cutoff, sent or given up, goes
with its attempts once its instance is gone (or if it had none); a pending one stays
for its sender.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import ColumnElement, Delete, and_, delete, exists, func, select
from sqlalchemy.orm import Session

from ..states import FINISHED_INSTANCE
from ..store import runs
from ..store.db import retrying, transaction
from ..store.notices import PENDING
from ..store.tables import EventRow, InstanceRow, NoticeRow, TaskRow
from . import sla_rollups
from .watermarks import SETTLE

logger = logging.getLogger(__name__)

_FINISHED = [status.value for status in FINISHED_INSTANCE]


@dataclass
class PruneReport:
    """What a prune removed (or, in a dry run, would remove)."""

    finished_before: datetime
    instances: int = 0
    tasks: int = 0
    events: int = 0
    notices: int = 0
    batches: int = 0
    dry_run: bool = False


def _due(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [InstanceRow.finished_at < cutoff, InstanceRow.status.in_(_FINISHED)]


def _deleted(session: Session, statement: Delete) -> int:
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


def _rolled_up(session: Session) -> ColumnElement[bool]:
    """Instances whose every event the SLA report's rollups hold (through ``ix_oms_events_instance``)."""
    mark = sla_rollups.rolled_up(session)
    return ~exists().where(EventRow.instance_id == InstanceRow.id, EventRow.id > mark)


def _catch_up(cutoff: datetime) -> None:
    """Roll the SLA report's rollups up to the events of every instance finished before ``cutoff``: an event settles
    :data:`~oms.ops.watermarks.SETTLE` after it was written, so a cutoff of just now waits that long first."""
    wait = (min(cutoff, datetime.now(UTC)) + SETTLE - datetime.now(UTC)).total_seconds()
    if wait > 0:
        time.sleep(wait)
    retrying(sla_rollups.catch_up, "pruning finished instances")  # its first step: an outage is waited out


def _prune_batch(cutoff: datetime, batch: int) -> tuple[int, int, int]:
    """One transaction: up to ``batch`` instances, then their tasks and events; return how many of each."""
    with transaction() as session:
        ids = list(session.scalars(select(InstanceRow.id).where(*_due(cutoff), _rolled_up(session))
                                   .order_by(InstanceRow.finished_at).limit(batch).with_for_update(skip_locked=True)))
        if not ids:
            return 0, 0, 0
        tasks = _deleted(session, delete(TaskRow).where(TaskRow.instance_id.in_(ids)))
        events = _deleted(session, delete(EventRow).where(EventRow.instance_id.in_(ids)))
        return _deleted(session, delete(InstanceRow).where(InstanceRow.id.in_(ids))), tasks, events


def _notices_due(cutoff: datetime, *, instances_due_too: bool = False) -> list[ColumnElement[bool]]:
    """Notices written before ``cutoff``, sent or given up, whose instance is gone or never was (or, to count
    before a prune, is due to go)."""
    kept = [InstanceRow.id == NoticeRow.instance_id]
    if instances_due_too:
        kept.append(~and_(*_due(cutoff)))
    return [NoticeRow.created_at < cutoff, NoticeRow.status != PENDING, ~exists().where(*kept)]


def _prune_notices(cutoff: datetime, batch: int) -> int:
    """One transaction: up to ``batch`` notices, oldest first, with their attempts (``ON DELETE CASCADE``)."""
    with transaction() as session:
        ids = list(session.scalars(select(NoticeRow.id).where(*_notices_due(cutoff)).order_by(NoticeRow.created_at)
                                   .limit(batch)))
        return _deleted(session, delete(NoticeRow).where(NoticeRow.id.in_(ids))) if ids else 0


def prune(finished_before: timedelta | datetime, *, batch: int = 5000, dry_run: bool = False,
          now: datetime | None = None) -> PruneReport:
    """Delete the instances finished before a moment (or longer than a duration ago), with their tasks and events,
    then the notices written before it that are sent or given up and whose instance is gone.

    Args:
        finished_before: a moment, or how long ago (``timedelta(days=90)``).
        batch: instances per transaction.
        dry_run: count what would be deleted; delete nothing.
    """
    started = runs.utcnow()
    now = now or datetime.now(UTC)
    cutoff = now - finished_before if isinstance(finished_before, timedelta) else finished_before
    report = PruneReport(cutoff, dry_run=dry_run)
    if dry_run:
        with transaction() as session:
            doomed = select(InstanceRow.id).where(*_due(cutoff)).scalar_subquery()
            report.instances = session.scalar(select(func.count()).select_from(InstanceRow).where(*_due(cutoff))) or 0
            report.tasks = session.scalar(select(func.count()).select_from(TaskRow)
                                          .where(TaskRow.instance_id.in_(doomed))) or 0
            report.events = session.scalar(select(func.count()).select_from(EventRow)
                                           .where(EventRow.instance_id.in_(doomed))) or 0
            report.notices = session.scalar(select(func.count()).select_from(NoticeRow)
                                            .where(*_notices_due(cutoff, instances_due_too=True))) or 0
        return report
    _catch_up(cutoff)
    while True:
        ids, tasks, events = retrying(partial(_prune_batch, cutoff, batch), "pruning finished instances")
        if not ids:
            break
        report.instances += ids
        report.tasks += tasks
        report.events += events
        report.batches += 1
        logger.info("pruned %d finished instance(s) (batch %d)", ids, report.batches)
        if ids < batch:
            break
    while (gone := retrying(partial(_prune_notices, cutoff, batch), "pruning notices")) > 0:
        report.notices += gone
        if gone < batch:
            break
    runs.record(runs.PRUNE, started, report.instances, details={
        "finished_before": cutoff.isoformat(), "instances": report.instances, "tasks": report.tasks,
        "events": report.events, "notices": report.notices, "batches": report.batches})
    return report
