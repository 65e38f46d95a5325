"""The PostgreSQL store's statements: CTEs composed from :mod:`oms.store.moves`, compiled once, on first use.

Each is the one-line SQL psycopg runs for one transition: it locks what it must
(the instance row first, then the task), checks the precondition, moves the rows,
inserts the new task rows and the events, and reports whether it applied. A
finished attempt is one of a few moves (:mod:`oms.store.contract`), each its own
statement. New rows travel as one JSON document per table, read with
``jsonb_populate_recordset`` against the table's own row type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    Integer,
    Text,
    all_,
    any_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    literal_column,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from ..states import EventKind, InstanceStatus, TaskStatus
from . import moves
from .contract import Advance, CountItem, EndInstance, Retry
from .tables import UTCDateTime, definitions, events, instances, tasks
from .tables import literal as sql

if TYPE_CHECKING:
    pass

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def _compiled(statement: ClauseElement) -> str:
    """``statement`` as the SQL psycopg runs, on one line. psycopg parses a query's placeholders anew on every
    call unless it is at most 4,096 bytes long (``MAX_CACHED_STATEMENT_LENGTH``); ``tests/unit/test_statements.py``
    keeps every statement here under it. The SQL holds no comments and no literal spaces."""
    sql = " ".join(str(statement.compile(dialect=_DIALECT)).split())
    assert "%(param_" not in sql, f"a value left as an anonymous parameter: {sql}"
    return sql


class _InsertRows(postgresql.Insert):
    """``INSERT INTO table SELECT r.* …`` where ``r`` has the table's own row type: written without a column list,
    so that the rows go in the table's physical column order, whatever order the migrations left it in."""

    inherit_cache = True


@compiles(_InsertRows)
def _insert_rows(element: _InsertRows, compiler: SQLCompiler, **kw: Any) -> str:
    written: str = compiler.visit_insert(element, **kw)  # type: ignore[no-untyped-call]
    return re.sub(r"^INSERT INTO (\S+) \([^)]*\)", r"INSERT INTO \1", written, count=1)


def _insert_records(table: Any, rows: Any) -> _InsertRows:
    """Insert every row ``rows`` (a select of ``r.*``) makes."""
    return _InsertRows(table).from_select([c.name for c in table.c], rows)


def _number(value: int) -> Any:
    """An integer written into the statement (not an anonymous parameter)."""
    return literal_column(str(value), Integer)


def _param(name: str, type_: Any = Text) -> Any:
    return bindparam(name, type_=type_)


NOW, TASK_ID, INSTANCE_ID = _param("now", UTCDateTime()), _param("task_id"), _param("instance_id")
WORKER_ID, LEASE_UNTIL = _param("worker_id"), _param("lease_until", UTCDateTime())
TASK_NAMES = [c.name for c in tasks.c]


def _rows(table: Any, name: str) -> Any:
    """The rows of ``table`` carried by the JSON parameter ``name``, with the table's own column types."""
    return func.jsonb_populate_recordset(literal_column(f"NULL::{table.name}"), _param(name, JSONB)).table_valued(
        *(c.name for c in table.c)).alias(f"r{name[0]}")


def _events_in(name: str = "events") -> Any:
    """The event rows of a JSON parameter, each with its ``position`` in the transition's log."""
    return func.jsonb_to_recordset(_param(name, JSONB)).table_valued(
        column("position", Integer), *(column(c, events.c[c].type) for c in moves.EVENT_COLUMNS),
    ).render_derived(with_types=True).alias("x")


# -- starts --------------------------------------------------------------------------------------------------------

def _start() -> str:
    """New instances, their first tasks and their events, if the definition they were built from is still the
    newest; an idempotency key used before inserts nothing."""
    latest = select(func.max(definitions.c.version).label("version")).where(
        definitions.c.workflow_id == _param("workflow_id")).cte("latest")
    new = _rows(instances, "instances")
    i = (_insert_records(instances, select(literal_column(f"{new.name}.*")).select_from(latest, new).where(
             latest.c.version == _param("version", Integer)))
         .on_conflict_do_nothing(index_elements=["workflow_id", "idempotency_key"],
                                 index_where=instances.c.idempotency_key.is_not(None))
         .returning(instances.c.id).cte("i"))
    new_tasks = _rows(tasks, "tasks")
    t = _insert_records(tasks, select(literal_column(f"{new_tasks.name}.*")).where(
        new_tasks.c.instance_id.in_(select(i.c.id)))).cte("t")
    new_events = _rows(events, "events")
    e = moves.log(select(*new_events.c[*moves.EVENT_COLUMNS]).where(new_events.c.instance_id.in_(
        select(i.c.id)))).cte("e")
    return _compiled(select(select(func.count()).select_from(i).scalar_subquery().label("inserted"),
                            select(latest.c.version).scalar_subquery().label("latest")).add_cte(latest, i, t, e))


# -- claims --------------------------------------------------------------------------------------------------------

def _claim(*where: Any, skip_locked: bool, next_due: bool = False, many: Any = None) -> str:
    """The oldest due queued row matching ``where`` runs (``many``: up to that many rows), and says so in the log;
    with ``next_due``, a row saying when something next becomes due (a retry's backoff ends, a lease runs out) when
    nothing was.

    The claim's commit waits for the WAL flush only if ``synchronous_commit`` is ``on`` (``OMS_DURABLE_CLAIMS``):
    ``set_config(..., true)`` sets it for this statement's own transaction.
    """
    sc = select(func.set_config(literal_column("'synchronous_commit'"), _param("synchronous_commit"), true()).label(
        "mode")).cte("sc")
    t = (moves.claim(WORKER_ID, NOW, LEASE_UNTIL, *where, skip_locked=skip_locked, many=many)
         .where(select(sc.c.mode).scalar_subquery().is_not(None)).cte("t"))
    e = moves.log(moves.task_events(moves.STARTED, t, NOW, worker_id=WORKER_ID)).cte("e")
    claimed: Any = moves.with_instance(t)
    if next_due:
        pending = select(func.min(tasks.c.ready_at)).where(tasks.c.topic == _param("topic"),
                                                            tasks.c.status == sql(TaskStatus.PENDING))
        leased = select(func.min(tasks.c.lease_expires_at)).where(tasks.c.topic == _param("topic"),
                                                                   tasks.c.status == sql(TaskStatus.RUNNING))
        due = func.least(pending.scalar_subquery(), leased.scalar_subquery())
        claimed = union_all(
            claimed.add_columns(cast(null(), UTCDateTime()).label("next_due")),
            select(*(null().label(f"n{k}") for k in range(len(claimed.selected_columns))), due)
            .where(~exists(select(t.c.id))))
    return _compiled(claimed.add_cte(sc, t, e))


# -- finished attempts ---------------------------------------------------------------------------------------------

def _finish(then: type, status: TaskStatus) -> str:
    """The statement of one kind of move (see :mod:`oms.store.contract`): lock the instance, end the attempt if its
    claim allows, move the instance on, offer what follows, write the events in order."""
    i0 = (select(instances.c.id, instances.c.waiting).where(instances.c.id == INSTANCE_ID).with_for_update()
          .cte("i0"))
    ended = moves.end_attempt(TASK_ID, status, NOW, result=_param("result", JSONB), error=_param("error"),
                              lost=_param("lost", Integer),
                              claim=moves.claim_ends(NOW, _param("holder"), _param("lapsed_before", UTCDateTime())))
    ended = ended.where(exists(select(i0.c.id)))
    if then is CountItem:  # not the last item: that one gathers the items' results, in the transactional path
        left = select(i0.c.waiting).scalar_subquery().op("->>")(_param("unless_last"))
        ended = ended.where(cast(left, Integer) > _number(1))
    t = ended.cte("t")
    changes: dict[str, Any] = {"updated_at": NOW}
    if then in (Advance, CountItem):
        joins = func.unnest(_param("joins", ARRAY(Text))).column_valued("j")
        counted = select(func.jsonb_object_agg(joins, cast(instances.c.waiting.op("->>")(joins), Integer) - _number(1)))
        changes["waiting"] = instances.c.waiting.op("||")(func.coalesce(counted.scalar_subquery(),
                                                                         literal_column("'{}'")))
    if then is Advance:
        result = _param("result", JSONB)
        steps_left = instances.c.steps_left - _number(1)
        changes |= {
            "results": case((result.is_(None), instances.c.results),
                            else_=instances.c.results.op("||")(func.jsonb_build_object(_param("step_id"), result))),
            "steps_left": steps_left,
            "current_step": func.greatest(instances.c.current_step,
                                          func.coalesce(_param("current_step", Integer), instances.c.current_step)),
            **moves.end_instance(InstanceStatus.DONE, NOW, when=steps_left <= _number(0)),
        }
    if then is EndInstance:
        changes |= moves.end_instance(InstanceStatus.FAILED, NOW, error=_param("instance_error"))
    i = (update(instances).where(instances.c.id == t.c.instance_id).values(**changes)
         .returning(instances.c.id, instances.c.payload, instances.c.waiting, instances.c.status).cte("i"))
    ctes = [i0, t, i]
    x = _events_in()
    place: Any = cast(x.c.position, postgresql.NUMERIC)
    logged: Any = select(*x.c[*moves.EVENT_COLUMNS], place.label("place")).select_from(i)
    offered: Any = literal_column("'[]'::jsonb")
    if then in (Advance, Retry):
        r = _rows(tasks, "new_tasks")
        # each row with its instance's payload (not sent from Python: it may be a megabyte)
        row = func.jsonb_populate_record(literal_column(r.name), func.jsonb_build_object(
            literal_column("'payload'"), i.c.payload)).table_valued(*TASK_NAMES).lateral("r")
        fresh: Any = select(literal_column(f"{row.name}.*")).select_from(i, r, row)
        if then is Advance:  # a join is offered only when its counter reaches zero
            waiting = cast(i.c.waiting.op("->>")(cast(r.c.step_index, Text)), Integer)
            fresh = fresh.where((r.c.step_index != all_(_param("joins_at", ARRAY(Integer)))) | (waiting == _number(0)))
        n = _insert_records(tasks, fresh).returning(tasks.c.id, tasks.c.step_index,
                                                                    tasks.c.item_index).cte("n")
        ctes.append(n)
        offered = select(func.coalesce(func.jsonb_agg(func.jsonb_build_array(n.c.step_index, n.c.item_index)),
                                       literal_column("'[]'::jsonb"))).scalar_subquery()
        queued = x.c.kind.in_([sql(EventKind.TASK_QUEUED), sql(EventKind.TASK_RETRIED)])
        logged = logged.where(~queued | x.c.task_id.in_(select(n.c.id)))
    if then is Advance:
        logged = logged.where((x.c.kind != sql(EventKind.WORKFLOW_DONE)) | (i.c.status == sql(InstanceStatus.DONE)))
    if then is EndInstance:
        c = moves.cancel_open_tasks(i.c.id, NOW, _param("cancel_reason"), but=TASK_ID).cte("c")
        ctes.append(c)
        # after the attempt's own event, before the instance's
        order = func.row_number().over(order_by=(c.c.step_id, c.c.item_index))
        place = literal_column("0.5") + order / literal_column("1e6")
        logged = union_all(logged, moves.task_events(moves.CANCELLED, c, NOW, reason=_param("cancel_reason"))
                           .add_columns(place.label("place")))
    ordered = logged.subquery("ev")
    ctes.append(moves.log(select(*ordered.c[*moves.EVENT_COLUMNS]).order_by(ordered.c.place)).cte("e"))
    applied = select(func.count()).select_from(t).scalar_subquery()
    return _compiled(select(applied.label("applied"), offered.label("offered")).add_cte(*ctes))


# -- leases and reads ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Statements:
    """Every statement of the store, as psycopg runs it."""

    start: str
    started_with: str
    #: A push worker's claim of the step its message names. It waits for a row another transaction holds (the
    #: scanner's), rather than skipping the step it was sent for.
    claim_step: str
    #: The same for one item of a mapped step (an equality the index serves, unlike IS NOT DISTINCT FROM).
    claim_item: str
    #: The same for the items of a chunk (one message, several items), in one statement.
    claim_items: str
    #: The same for the sibling branches of a chunk (one message, several steps), in one statement.
    claim_steps: str
    #: A pull worker's claim of the oldest due step on a topic; concurrent callers skip each other's rows.
    claim_topic: str
    #: The same for up to ``max_tasks`` steps at once (a batch fetch), in one statement.
    claim_tasks: str
    #: One statement per kind of move and the status it ends the attempt with.
    finish: dict[tuple[type, TaskStatus], str]
    extend: str
    heartbeat: str
    lookup: str
    state: str
    lapsed: str

    def all(self) -> dict[str, str]:
        """Each statement by a name (a move's: ``finish.<move>.<status>``)."""
        named = {name: value for name, value in vars(self).items() if isinstance(value, str)}
        return named | {f"finish.{kind.__name__}.{status}": sql for (kind, status), sql in self.finish.items()}


@cache
def statements() -> Statements:
    """Every statement, compiled once per process, on first use (an import of the engine does not pay for it)."""
    step = (tasks.c.instance_id == INSTANCE_ID, tasks.c.step_index == _param("index", Integer),
            tasks.c.ready_at <= _param("due", UTCDateTime()))
    return Statements(
        start=_start(),
        started_with=_compiled(select(instances.c.id, instances.c.payload).where(
            instances.c.workflow_id == _param("workflow_id"), instances.c.idempotency_key == _param("key"))),
        claim_step=_claim(*step, tasks.c.item_index.is_(None), skip_locked=False),
        claim_item=_claim(*step, tasks.c.item_index == _param("item_index", Integer), skip_locked=False),
        claim_items=_claim(*step, tasks.c.item_index >= _param("first", Integer),
                           tasks.c.item_index < _param("first", Integer) + _param("items", Integer),
                           skip_locked=False, many=_param("items", Integer)),
        claim_steps=_claim(tasks.c.instance_id == INSTANCE_ID,
                           tasks.c.step_index == any_(_param("indexes", ARRAY(Integer))),
                           tasks.c.item_index.is_(None), tasks.c.ready_at <= _param("due", UTCDateTime()),
                           skip_locked=False, many=func.cardinality(_param("indexes", ARRAY(Integer)))),
        claim_topic=_claim(tasks.c.topic == _param("topic"), tasks.c.ready_at <= NOW, skip_locked=True,
                           next_due=True),
        claim_tasks=_claim(tasks.c.topic == _param("topic"), tasks.c.ready_at <= NOW, skip_locked=True,
                           next_due=True, many=_param("max_tasks", Integer)),
        finish={(kind, status): _finish(kind, status) for kind, status in (
            (Advance, TaskStatus.DONE), (CountItem, TaskStatus.DONE), (Retry, TaskStatus.FAILED),
            (Retry, TaskStatus.LAPSED), (EndInstance, TaskStatus.FAILED))},
        extend=_compiled(moves.extend_leases(tasks.c.id == TASK_ID, NOW, LEASE_UNTIL, _param("holder"))),
        heartbeat=_compiled(moves.extend_leases(tasks.c.id == any_(_param("task_ids", ARRAY(Text))), NOW,
                                                LEASE_UNTIL)),
        lookup=_compiled(moves.with_instance(tasks).where(tasks.c.id == TASK_ID)),
        state=_compiled(moves.state(TASK_ID)),
        lapsed=_compiled(moves.lapsed(NOW, _param("topic"), _param("limit", Integer))),
    )
