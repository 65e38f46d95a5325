"""The scanner that turns late steps yellow, then red, and escalates them; it also re-offers lapsed claims.

A row's clock starts when it becomes ready. ``sla_check_at`` holds the next moment
its light can change (``warn_at`` while green, ``expires_at`` while yellow), or its
escalation ladder's next rung if that comes first, so the scan reads only due rows
through a partial index. Rows are locked with ``FOR
UPDATE SKIP LOCKED``; two scanners never take the same row, and a row whose light
has moved on is no longer due: each warning and breach is recorded once.

No row can stop the scan: a batch that fails is done again row by row, each in a
savepoint, and a row that still fails is logged, recorded on the row and looked at
again after :data:`RETRY_FAILED_ROW`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..celery.dispatch import publish_all
from ..durations import utcnow
from ..engine import control
from ..engine.door import Task, sweep
from ..engine.escalations import VIOLATION, WARNING, escalation_workflow
from ..engine.timers import soonest_wake, wake_timers
from ..notify import kick
from ..states import EventKind, TaskStatus
from ..store import moves, runs
from ..store.catalog import load_definition
from ..store.db import TRANSIENT, database, retrying, transaction
from ..store.events import record
from ..store.tables import EventRow, InstanceRow, TaskRow
from . import predict
from .advance import Batch, ScanReport, advance_instance, advance_task, apply_prediction

logger = logging.getLogger(__name__)

#: When the scanner looks again at a row it could not handle.
RETRY_FAILED_ROW = timedelta(minutes=5)


def scan_sla(now: datetime | None = None, *, batch: int = 1000) -> ScanReport:
    """Record and escalate every warning and breach due at ``now``; re-offer steps whose claim lapsed.

    Safe to run concurrently: each due row is taken by one scanner only. Due rows are
    handled ``batch`` at a time, one transaction each, so the first escalations of a
    burst go out while the rest are still being recorded. No row can stop the scan:
    one that fails is logged, recorded on the row and looked at again later
    (``ScanReport.errors``). Each scan is recorded (:mod:`oms.store.runs`), so a missing
    scanner is noticed.
    """
    started = utcnow()
    now = now or utcnow()
    report = ScanReport()
    # saved before the scan's transaction: SQLite has one writer, and this is another one
    escalation_workflow(WARNING)
    escalation_workflow(VIOLATION)
    due, mark = retrying(partial(_next_due, now), "reading what is due")
    while True:
        woken, after_timers = wake_timers(
            now, limit=batch, on_error=partial(_row_error, report, now, "timer")) if due.timers else (0, [])
        report.timers += woken
        publish_all(after_timers)
        work = Batch(now)
        found = (0, 0)
        if due.rows:
            try:
                found = _scan_batch(work, batch, isolated=False)
            except TRANSIENT:
                raise
            except Exception as exc:
                logger.warning("SLA scan: a batch failed (%s: %s); doing it again row by row", type(exc).__name__,
                               exc)
                work = Batch(now)
                found = _scan_batch(work, batch, isolated=True)
        _apply_policies(work)
        work.add_to(report)
        expired = sweep(now=now, limit=batch, on_error=partial(_row_error, report, now, "lease sweep")
                        ) if due.leases else []
        report.leases_expired += len(expired)
        publish_all(work.dispatches + expired)
        if max(*found, len(expired), woken) < batch:
            break
        due = Due()  # a full batch: more may be due of every kind
    try:
        _predict(now, report, mark)
    except TRANSIENT:
        raise
    except Exception as exc:  # a prediction is advice: it never stops the scan
        report.errors += 1
        logger.error("SLA scan: the prediction failed (%s: %s); the scan goes on", type(exc).__name__, exc,
                     exc_info=exc)
    if report.notices:
        kick()  # the rungs' notices, committed: sent now rather than at the next sweep
    runs.record(runs.SCAN, started, report.rows, errors=report.errors, details=_counts(report))
    return report


@dataclass(frozen=True)
class Due:
    """Which kinds of the scan's work are due (all of them, unless the scan's opening probe said otherwise)."""

    rows: bool = True
    timers: bool = True
    leases: bool = True


#: When each kind of the scan's work next falls due (the soonest SLA check of a task and of an instance, timer,
#: lease), and the definitions' mark: a probe of each partial index in one statement with no parameter (its plan
#: prepared once), so that a scan with no news reads nothing more than this, in one round trip.
_NEXT_DUE = select(
    select(func.min(TaskRow.sla_check_at)).where(TaskRow.sla_check_at.is_not(None)).scalar_subquery(),
    select(func.min(InstanceRow.sla_check_at)).where(InstanceRow.sla_check_at.is_not(None)).scalar_subquery(),
    soonest_wake(),
    moves.soonest_lapse(),
    *predict.DEFINITIONS_MARK,
)


def _next_due(now: datetime) -> tuple[Due, tuple[Any, ...]]:
    """What is due at ``now``, by the conditions the scan's reads take (a lease lapses strictly before ``now``), and
    the definitions' :data:`~oms.sla.predict.DEFINITIONS_MARK`."""
    with database().reader.connect() as conn:
        task, instance, timer, lease, *mark = conn.execute(_NEXT_DUE).one()
    return Due(rows=any(at is not None and at <= now for at in (task, instance)),
               timers=timer is not None and timer <= now, leases=lease is not None and lease < now), tuple(mark)


def _scan_batch(work: Batch, batch: int, *, isolated: bool) -> tuple[int, int]:
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
                _advance(session, work, task, isolated, partial(advance_task, session, task, version, work))
        instances = session.scalars(
            select(InstanceRow).where(InstanceRow.sla_check_at <= now).order_by(InstanceRow.sla_check_at)
            .with_for_update(skip_locked=True).limit(batch)
        ).all()
        for instance in instances:
            _advance(session, work, instance, isolated, partial(advance_instance, session, instance, work))
        work.start(session)
    return len(tasks), len(instances)


def _advance(session: Session, work: Batch, row: TaskRow | InstanceRow, isolated: bool,
             advance: Callable[[], None]) -> None:
    if not isolated:
        advance()
        return
    mark = work.mark()
    try:
        with session.begin_nested():
            advance()
            work.start(session)
            session.flush()
    except TRANSIENT:
        raise
    except Exception as exc:
        work.undo(mark)
        _row_failed(session, row, exc, work)


def _row_failed(session: Session, row: TaskRow | InstanceRow, error: BaseException, work: Batch) -> None:
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
                record(session, EventKind.TASK_SCAN_FAILED, row.instance_id, work.now, row, error=detail)
            elif isinstance(row, InstanceRow) and not _recorded(session, None, detail, row.id):
                record(session, EventKind.WORKFLOW_SCAN_FAILED, row.id, work.now, error=detail)
            session.flush()
    except TRANSIENT:
        raise
    except Exception:  # not even the error could be recorded: it stays due, and the next scan tries again
        logger.exception("SLA scan: could not record the failure of %s %s", what, row.id)


def _recorded(session: Session, task_id: str | None, detail: str, instance_id: str | None = None) -> bool:
    """Whether the row's newest event already records this failure: each scan logs it, the event log says it once."""
    query = select(EventRow.kind, EventRow.data).order_by(EventRow.id.desc()).limit(1)
    query = query.where(EventRow.task_id == task_id) if task_id else query.where(
        EventRow.instance_id == instance_id, EventRow.task_id.is_(None))
    latest = session.execute(query).first()
    return latest is not None and latest.kind.endswith(".scan_failed") and latest.data.get("error") == detail


def _apply_policies(batch: Batch) -> None:
    """``on_breach``: ``fail`` and ``retry`` end the breached attempt, one transaction each.

    Run after the scan's transaction, which holds task rows only: here the instance
    is locked first, then its task, the order every transition takes. One that fails
    is logged and recorded on its task; the others go on.
    """
    for task_id, instance_id, policy, reason in batch.breached:

        def end(task_id: str = task_id, instance_id: str = instance_id, policy: str = policy,
                reason: str = reason) -> list[Any]:
            with transaction() as session:
                return control.end_breached(session, task_id, instance_id, policy, batch.now, reason)

        try:
            batch.dispatches.extend(retrying(end, "applying a breach policy"))
        except TRANSIENT:
            raise
        except Exception as exc:
            batch.errors += 1
            logger.error("SLA scan: the breach policy %r of task %s failed (%s: %s); the scan goes on", policy,
                         task_id, type(exc).__name__, exc, exc_info=exc)
            _record_failure(task_id, f"on_breach {policy}: {type(exc).__name__}: {exc}", batch.now)
    batch.breached.clear()


def _record_failure(task_id: str, detail: str, now: datetime) -> None:
    """Record ``task.scan_failed`` on a task, in a transaction of its own (best effort: the error is logged)."""
    detail = detail[:1000]
    try:
        with transaction() as session:
            task = session.get(TaskRow, task_id)
            if task is not None and not _recorded(session, task_id, detail):
                record(session, EventKind.TASK_SCAN_FAILED, task.instance_id, now, task, error=detail)
    except Exception:
        logger.exception("SLA scan: could not record the failure of task %s", task_id)


def _predict(now: datetime, report: ScanReport, mark: tuple[Any, ...] | None) -> None:
    """Turn yellow the queued steps a topic's pace will make late, and green those it no longer will (once).

    Read outside any transaction (most scans find no light moves); only the steps whose light moves are locked.
    """
    with database().reader.connect() as conn:
        found = {change.task_id: change for change in predict.changes(conn, now, mark=mark)}
    if not found:
        return
    work = Batch(now)
    with transaction() as session:
        ids = list(found)
        for start in range(0, len(ids), 1000):
            rows = session.execute(
                select(TaskRow, InstanceRow.version).join(InstanceRow, InstanceRow.id == TaskRow.instance_id)
                .where(TaskRow.id.in_(ids[start:start + 1000]), TaskRow.status == TaskStatus.PENDING)
                .with_for_update(of=TaskRow, skip_locked=True)
            ).all()
            for task, version in rows:
                definition, _ = load_definition(session, task.workflow_id, version)
                apply_prediction(session, task, definition, found[task.id], work)
        work.start(session)
    work.add_to(report)
    publish_all(work.dispatches)


def _row_error(report: ScanReport, now: datetime, what: str, task: Task, error: BaseException) -> None:
    report.errors += 1
    _record_failure(task.id, f"{what}: {type(error).__name__}: {error}", now)


def _counts(report: ScanReport) -> dict[str, Any]:
    return {"warnings": report.warnings, "violations": report.violations, "escalations": len(report.escalations),
            "escalated": report.escalated, "notices": report.notices,
            "leases_expired": report.leases_expired, "timers": report.timers, "errors": report.errors}
