"""Every write of a status or a light, in one place: the statements that move tasks and instances.

Each move is a function returning a SQLAlchemy Core statement (or the values of
one), whose arguments may be plain values or bind parameters:

* the control operations (cancel, rerun, breach policies), the transactional path
  of a finished attempt (:func:`oms.engine.plan.apply`) and the portable store
  execute them with values, in one transaction;
* the PostgreSQL store composes the same builders, with bind parameters, into one
  statement per transition (a CTE), compiled once, on first use (:mod:`oms.store.statements`).

So the rule that ends an instance's other open tasks, the one that freezes a light
when a row finishes, the one that ends an instance and the one that says whose
claim may end, live here and nowhere else. Statuses, lights and event kinds come
from :mod:`oms.states` as SQL literals (:func:`~oms.store.tables.literal`), so that
PostgreSQL's generic plans can use the partial indexes defined on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    FromClause,
    Insert,
    ScalarSelect,
    Select,
    Update,
    and_,
    case,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ..states import (
    OPEN_TASK,
    EventKind,
    InstanceStatus,
    Light,
    LightReason,
    StepKind,
    TaskStatus,
    light_event,
    task_event,
)
from .events import record
from .tables import InstanceRow, TaskRow, events, instances, tasks
from .tables import literal as sql

#: A value or an expression: a builder's argument (a bind parameter when the statement is compiled once).
Value = Any

#: What an event row is made of, in order (``id`` is the database's).
EVENT_COLUMNS = ("instance_id", "task_id", "kind", "step_id", "attempt", "at", "data")
#: The task columns a worker's :class:`~oms.model.task.Task` is made of (its instance's ``results`` and
#: ``version`` come from a join).
TASK_COLUMNS = ("id", "instance_id", "workflow_id", "step_id", "step_index", "topic", "attempt", "failures",
                "payload", "expires_at", "lease_expires_at", "worker_id", "item_index", "item")

STARTED = task_event(TaskStatus.PENDING, TaskStatus.RUNNING)
RELEASED = task_event(TaskStatus.RUNNING, TaskStatus.PENDING)
HUMAN_TOPIC = StepKind.HUMAN.topic
CANCELLED = task_event(TaskStatus.RUNNING, TaskStatus.CANCELLED)


def _expression(value: Value) -> ColumnElement[Any]:
    """An argument as SQL: an expression as it is, ``None`` as ``NULL``, a value as a bound one."""
    if isinstance(value, ColumnElement):
        return value
    return null() if value is None else literal(value)


class compact_object(FunctionElement[Any]):
    """A JSON object of key/value pairs without the keys whose value is NULL (as :func:`oms.engine.rows.event`
    leaves out ``None``)."""

    type = JSON()
    inherit_cache = True


@compiles(compact_object, "postgresql")
def _compact_object_postgresql(element: compact_object, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_strip_nulls(jsonb_build_object({compiler.process(element.clauses, **kw)}))"


@compiles(compact_object)
def _compact_object(element: compact_object, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite: a JSON merge patch drops the keys whose value is null (RFC 7396)
    return f"json_patch('{{}}', json_object({compiler.process(element.clauses, **kw)}))"


def frozen(column: ColumnElement[datetime | None], now: Value) -> ColumnElement[datetime | None]:
    """A row's next SLA check as it finishes at ``now``: none if it finished before it (its light stands), else
    unchanged, so that the scanner still records the late warning or breach, exactly once."""
    return case((column > now, null()), else_=column)


def claim_ends(now: Value, holder: Value = None, lapsed_before: Value = None) -> ColumnElement[bool]:
    """Which claims a move may end: a live one, held by ``holder`` when given (a parked step, its clock paused, has
    no holder: anyone may); or, for a lease sweep, one whose lease ran out before ``lapsed_before``.

    The lapse itself ends a claim: a worker's call after it applies nothing, swept or not.
    """
    live = or_(tasks.c.lease_expires_at.is_(None), tasks.c.lease_expires_at >= now)
    if not isinstance(lapsed_before, ColumnElement):  # a value: the statement runs once, as it is
        lease = live if lapsed_before is None else tasks.c.lease_expires_at < lapsed_before
        held = or_(tasks.c.worker_id.is_(None), tasks.c.worker_id == holder) if holder is not None else true()
        return and_(held, lease)
    # bind parameters: the statement is compiled once and decides when it runs
    held = or_(holder.is_(None), tasks.c.worker_id.is_(None), tasks.c.worker_id == holder)
    return and_(held, case((lapsed_before.is_(None), live), else_=tasks.c.lease_expires_at < lapsed_before))


def end_attempt(task_id: Value, status: TaskStatus, now: Value, *, result: Value = None, error: Value = None,
                lost: Value = None, claim: ColumnElement[bool],
                open_as: Iterable[TaskStatus] = (TaskStatus.RUNNING,)) -> Update:
    """An attempt ends ``status`` (done, failed, lapsed) at ``now``, if it is still ``open_as`` and ``claim`` holds.

    ``lost``: the claims lost so far, written when a lease sweep ends it. Returns the instance's id when it applied.
    """
    return (
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status.in_([sql(s) for s in open_as]), claim)
        .values(status=sql(status), finished_at=now, result=result, error=error,
                lost=func.coalesce(_expression(lost), tasks.c.lost), sla_check_at=frozen(tasks.c.sla_check_at, now))
        .returning(tasks.c.instance_id)
    )


def cancel_open_tasks(instance_id: Value, now: Value, reason: Value, *, but: Value = None) -> Update:
    """The instance ended first: its open tasks (all but ``but``) are cancelled, and their late reports refused.

    Returns what :func:`task_events` needs to log each one's ``task.cancelled``.
    """
    others = [] if but is None else [tasks.c.id != but]
    return (
        update(tasks)
        .where(tasks.c.instance_id == instance_id, tasks.c.status.in_([sql(s) for s in OPEN_TASK]), *others)
        .values(status=sql(TaskStatus.CANCELLED), finished_at=now, error=reason,
                sla_check_at=frozen(tasks.c.sla_check_at, now))
        .returning(tasks.c.instance_id, tasks.c.id, tasks.c.step_id, tasks.c.attempt, tasks.c.item_index)
    )


def end_instance(status: InstanceStatus, now: Value, *, error: Value = None,
                 when: ColumnElement[bool] | None = None) -> dict[str, Any]:
    """The values that end an instance ``status`` at ``now`` (``error``: why it failed or was cancelled).

    ``when``: only where this holds (a statement that finishes the instance only if its last step is done);
    elsewhere each column keeps its value.
    """
    values: dict[str, Any] = {"status": sql(status), "finished_at": _expression(now),
                              "sla_check_at": frozen(instances.c.sla_check_at, now)}
    if status is not InstanceStatus.DONE:
        values["error"] = _expression(error)
    if when is None:
        return values
    return {name: case((when, value), else_=instances.c[name]) for name, value in values.items()}


def finished_row(status: InstanceStatus, now: datetime) -> dict[str, Any]:
    """The values of an instance row that ends as it is made (a start whose every step maps over nothing)."""
    return {"status": status, "finished_at": now, "sla_check_at": None}


def holder_of_key(workflow_id: str, business_key: str) -> Select[tuple[str]]:
    """The unfinished instance of ``workflow_id`` that has ``business_key`` (at most one: a partial unique index)."""
    return select(instances.c.id).where(instances.c.workflow_id == workflow_id,
                                        instances.c.business_key == business_key, instances.c.finished_at.is_(None))


def claim(worker_id: Value, now: Value, lease_until: Value, *where: ColumnElement[bool],
          skip_locked: bool, many: Value = None) -> Update:
    """The oldest due queued attempt matching ``where`` runs, claimed by ``worker_id`` until ``lease_until``.

    ``skip_locked``: pull workers skip each other's rows; a push worker waits for the row its message names.
    ``many``: up to that many of the oldest, in the same statement (a batch fetch).
    """
    oldest = (select(tasks.c.id).where(tasks.c.status == sql(TaskStatus.PENDING), *where)
              .order_by(tasks.c.ready_at).limit(literal_column("1") if many is None else many)
              .with_for_update(skip_locked=skip_locked))
    return (
        update(tasks).where(tasks.c.id == oldest.scalar_subquery() if many is None else tasks.c.id.in_(oldest))
        .values(status=sql(TaskStatus.RUNNING), worker_id=worker_id, started_at=now, lease_expires_at=lease_until)
        .returning(*(tasks.c[name] for name in TASK_COLUMNS))
    )


def hold(which: ColumnElement[bool], holder: Value, now: Value) -> Update:
    """The queued human steps ``which`` names are claimed by the person ``holder``: with no lease, her claim does
    not lapse (she releases it, is disabled, or a supervisor reassigns the step)."""
    return (
        update(tasks).where(which, tasks.c.topic == HUMAN_TOPIC, tasks.c.status == sql(TaskStatus.PENDING))
        .values(status=sql(TaskStatus.RUNNING), worker_id=holder, started_at=now, lease_expires_at=None)
        .returning(*(tasks.c[name] for name in TASK_COLUMNS))
    )


def unhold(which: ColumnElement[bool]) -> Update:
    """People's claims on the human steps ``which`` names go back to the queue; their SLA clocks run on."""
    return (
        update(tasks).where(which, tasks.c.topic == HUMAN_TOPIC, tasks.c.status == sql(TaskStatus.RUNNING))
        .values(status=sql(TaskStatus.PENDING), worker_id=None, started_at=None)
        .returning(*(tasks.c[name] for name in TASK_COLUMNS))
    )


def reassign(which: ColumnElement[bool], assign: Value) -> Update:
    """The open human steps ``which`` names get new candidates (``{"users": [...], "groups": [...]}``)."""
    return (
        update(tasks).where(which, tasks.c.topic == HUMAN_TOPIC, tasks.c.status.in_([sql(s) for s in OPEN_TASK]))
        .values(assign=assign)
        .returning(*(tasks.c[name] for name in TASK_COLUMNS))
    )


def live_claims(now: Value) -> ColumnElement[bool]:
    """Running claims whose lease has not lapsed at ``now``: the lapse ended a claim, it is not revived."""
    return and_(tasks.c.status == sql(TaskStatus.RUNNING),
                or_(tasks.c.lease_expires_at.is_(None), tasks.c.lease_expires_at >= now))


def extend_leases(which: ColumnElement[bool], now: Value, lease_until: Value, holder: Value = None) -> Update:
    """Move the leases of the live claims ``which`` names to ``lease_until`` (only ``holder``'s, when given)."""
    holder = _expression(holder)
    return (update(tasks).where(which, live_claims(now), or_(holder.is_(None), tasks.c.worker_id == holder))
            .values(lease_expires_at=lease_until))


def state(task_id: Value) -> Select[Any]:
    """Where a task and its instance stand (:class:`~oms.store.contract.State`'s columns): read when a transition
    did not apply, to say why, or that its holder repeated how it had ended it."""
    return (select(tasks.c.status.label("task_status"), instances.c.id.label("instance_id"),
                   instances.c.status.label("instance_status"), tasks.c.worker_id, tasks.c.lease_expires_at,
                   tasks.c.result, tasks.c.error)
            .join_from(tasks, instances, instances.c.id == tasks.c.instance_id)
            .where(tasks.c.id == _expression(task_id)))


_RUNNING = tasks.c.status == sql(TaskStatus.RUNNING)


def lapsed(now: Value, topic: Value, limit: Value) -> Select[Any]:
    """Running attempts whose lease ran out before ``now`` (on ``topic``, when given), oldest lapse first, with
    their lost claims so far and what a re-offer keeps (:class:`~oms.model.task.Place`)."""
    topic = _expression(topic)
    return (
        with_instance(tasks).add_columns(tasks.c.lost, tasks.c.ready_at, tasks.c.light, tasks.c.rung)
        .where(_RUNNING, tasks.c.lease_expires_at < now, or_(topic.is_(None), tasks.c.topic == topic))
        .order_by(tasks.c.lease_expires_at).limit(limit)
    )


def soonest_lapse() -> ScalarSelect[Any]:
    """When the first running attempt's lease runs out (:func:`lapsed` reads it once it has): an index probe."""
    return select(func.min(tasks.c.lease_expires_at)).where(_RUNNING).scalar_subquery()


def with_instance(source: FromClause) -> Select[Any]:
    """A worker's task: the task columns of ``source`` (the task table, or what a claim returned) with its
    instance's results and definition version."""
    return (select(*(source.c[name] for name in TASK_COLUMNS), instances.c.results, instances.c.version)
            .join_from(source, instances, instances.c.id == source.c.instance_id))


def task_events(kind: EventKind, source: FromClause, now: Value, **data: Value) -> Select[Any]:
    """One ``kind`` event per task row of ``source`` (what an UPDATE returned), with ``data`` and its item index."""
    pairs = [part for key, value in {**data, "item_index": source.c.item_index}.items()
             for part in (literal_column(f"'{key}'"), _expression(value))]
    return select(source.c.instance_id, source.c.id, sql(kind), source.c.step_id, source.c.attempt,
                  _expression(now), compact_object(*pairs))


def log(rows: Select[Any]) -> Insert:
    """Write the events ``rows`` selects (columns in :data:`EVENT_COLUMNS` order)."""
    return insert(events).from_select(list(EVENT_COLUMNS), rows)


def move_light(session: Session, row: TaskRow | InstanceRow, light: Light, now: datetime, *,
               check_at: datetime | None, because: LightReason | None = None, **data: Any) -> EventKind:
    """Change a locked row's SLA light (refused unless :data:`oms.states.LIGHT_MOVES` lists the move), set when the
    scanner looks at it next, and log the move's event with ``data``; return the event's kind.

    ``because``: why the light is what it is when not the fraction rule (a prediction, or one taken back).
    """
    kind = light_event("task" if isinstance(row, TaskRow) else "instance", row.light, light)
    row.light, row.sla_check_at = light, check_at
    if isinstance(row, TaskRow):
        if because is not None:
            row.light_reason = because
        record(session, kind, row.instance_id, now, row, **data)
    else:
        record(session, kind, row.id, now, **data)
    return kind
