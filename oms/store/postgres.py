"""The store on PostgreSQL: every transition one prepared statement, one round trip.

Each statement is a CTE that locks what it must (the instance row first, then the
task), checks the precondition, moves the rows, inserts the new task rows and the
events, and reports whether it applied. It runs in autocommit on a pooled psycopg
connection, prepared on first use (``prepare=True``) and reused from then on.

Status values that partial indexes are defined on (``status = 'pending'``,
``status = 'running'``) are literals in the SQL, so generic plans can use those
indexes. New rows travel as one JSON document per table
(``jsonb_populate_recordset``), built by :mod:`oms.rows`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import namedtuple_row

from ..engine.task import Task
from ..settings import get_settings
from ..states import InstanceStatus, TaskStatus, instance_event, task_event
from . import Started, State
from .db import Database

if TYPE_CHECKING:
    from ..engine.plan import Offered, Plan

PENDING, RUNNING = TaskStatus.PENDING.value, TaskStatus.RUNNING.value
FAILED = TaskStatus.FAILED.value
DONE = InstanceStatus.DONE.value
STARTED = task_event(TaskStatus.PENDING, TaskStatus.RUNNING)
QUEUED, RETRIED = (task_event(None, TaskStatus.PENDING, kind) for kind in ("task.queued", "task.retried"))
CANCELLED = task_event(TaskStatus.PENDING, TaskStatus.FAILED, "task.cancelled")
WORKFLOW_DONE = instance_event(InstanceStatus.RUNNING, InstanceStatus.DONE)

#: What a worker's task is made of: the task's columns, then its instance's.
_TASK = ("t.id, t.instance_id, t.workflow_id, t.step_id, t.step_index, t.topic, t.attempt, t.failures, t.payload,"
         " t.expires_at, t.lease_expires_at, t.worker_id, t.item_index, t.item, i.results, i.version")
_RETURNING = ("id, instance_id, workflow_id, step_id, step_index, topic, attempt, failures, payload, expires_at,"
              " lease_expires_at, worker_id, item_index, item")
_EVENT_COLUMNS = "instance_id, task_id, kind, step_id, attempt, at, data"


def _compact(sql: str) -> str:
    """``sql`` on one line. psycopg parses a query's placeholders anew on every call
    unless the query is at most 4,096 bytes long (``MAX_CACHED_STATEMENT_LENGTH``):
    indented, :data:`FINISH` was not, and its parsing cost more client CPU than the
    rest of a completion's. The statements hold no comments and no literal spaces."""
    return " ".join(sql.split())


#: New instances, their first tasks and their events, if the definition they were built
#: from is still the newest; an idempotency key used before inserts nothing.
START = _compact(f"""
WITH latest AS (
    SELECT max(version) AS version FROM oms_definitions WHERE workflow_id = %(workflow_id)s
), i AS (
    INSERT INTO oms_instances
    SELECT r.* FROM latest, jsonb_populate_recordset(NULL::oms_instances, %(instances)s::jsonb) r
    WHERE latest.version = %(version)s
    ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), t AS (
    INSERT INTO oms_tasks
    SELECT r.* FROM jsonb_populate_recordset(NULL::oms_tasks, %(tasks)s::jsonb) r
    WHERE r.instance_id IN (SELECT id FROM i)
), e AS (
    INSERT INTO oms_events ({_EVENT_COLUMNS})
    SELECT {_EVENT_COLUMNS} FROM jsonb_populate_recordset(NULL::oms_events, %(events)s::jsonb) r
    WHERE r.instance_id IN (SELECT id FROM i)
)
SELECT (SELECT count(*) FROM i) AS inserted, (SELECT version FROM latest) AS latest
""")

STARTED_WITH = ("SELECT id, payload FROM oms_instances"
                " WHERE workflow_id = %(workflow_id)s AND idempotency_key = %(key)s")

def _claim(where: str, lock: str) -> str:
    """The CTEs of a claim: the oldest due pending row matching ``where`` runs, and says so in the log.

    The claim's commit waits for the WAL flush only if ``%(synchronous_commit)s`` is
    ``on`` (``OMS_DURABLE_CLAIMS``): ``set_config(..., true)`` sets it for this
    statement's own transaction.
    """
    return f"""
WITH sc AS (
    SELECT set_config('synchronous_commit', %(synchronous_commit)s, true) AS mode
), t AS (
    UPDATE oms_tasks
    SET status = '{RUNNING}', worker_id = %(worker_id)s, started_at = %(now)s, lease_expires_at = %(lease_until)s
    WHERE id = (
        SELECT id FROM oms_tasks WHERE {where} AND status = '{PENDING}' ORDER BY ready_at LIMIT 1 {lock}
    ) AND (SELECT mode FROM sc) IS NOT NULL
    RETURNING {_RETURNING}
), e AS (
    INSERT INTO oms_events ({_EVENT_COLUMNS})
    SELECT instance_id, id, '{STARTED}', step_id, attempt, %(now)s,
        jsonb_strip_nulls(jsonb_build_object('worker_id', %(worker_id)s::text, 'item_index', item_index))
    FROM t
)"""


#: A push worker's claim of the step its message names. It waits for a row another
#: transaction holds (the scanner's), rather than skipping the step it was sent for.
CLAIM_STEP = _compact(_claim("instance_id = %(instance_id)s AND step_index = %(index)s AND item_index IS NULL"
                    " AND ready_at <= %(due)s", "FOR UPDATE") + f"""
SELECT {_TASK} FROM t JOIN oms_instances i ON i.id = t.instance_id
""")

#: The same for one item of a mapped step (an equality the index serves, unlike IS NOT DISTINCT FROM).
CLAIM_ITEM = CLAIM_STEP.replace("item_index IS NULL", "item_index = %(item_index)s")

#: A pull worker's claim of the oldest due step on a topic; concurrent callers skip
#: each other's rows. When nothing is due, says when something next will be.
CLAIM_TOPIC = _compact(_claim("topic = %(topic)s AND ready_at <= %(now)s", "FOR UPDATE SKIP LOCKED") + f"""
SELECT {_TASK}, NULL::timestamptz AS next_due FROM t JOIN oms_instances i ON i.id = t.instance_id
UNION ALL
SELECT {", ".join(["NULL"] * 16)}, least(
    (SELECT min(ready_at) FROM oms_tasks WHERE topic = %(topic)s AND status = '{PENDING}'),
    (SELECT min(lease_expires_at) FROM oms_tasks WHERE topic = %(topic)s AND status = '{RUNNING}'))
WHERE NOT EXISTS (SELECT FROM t)
""")

_FROZEN = "CASE WHEN sla_check_at > %(now)s THEN NULL ELSE sla_check_at END"

#: End a running attempt and move its instance on (see :class:`~oms.store.Finish`):
#: lock the instance, move the task if it still runs, advance the instance's counters
#: (a join is offered only when its counter reaches zero), offer the next tasks,
#: cancel the instance's other open tasks when it fails, write the events in order.
FINISH = _compact(f"""
WITH i0 AS (
    SELECT id, waiting FROM oms_instances WHERE id = %(instance_id)s FOR UPDATE
), t AS (
    UPDATE oms_tasks
    SET status = %(status)s, finished_at = %(now)s, result = %(result)s::jsonb, error = %(error)s,
        lost = coalesce(%(lost)s::int, lost), sla_check_at = {_FROZEN}
    WHERE id = %(task_id)s AND status = '{RUNNING}' AND EXISTS (SELECT FROM i0)
      AND CASE WHEN %(lapsed_before)s::timestamptz IS NULL
               THEN lease_expires_at IS NULL OR lease_expires_at >= %(now)s
               ELSE lease_expires_at < %(lapsed_before)s::timestamptz END
      AND (%(unless_last)s::text IS NULL OR ((SELECT waiting FROM i0) ->> %(unless_last)s::text)::int > 1)
      AND (%(holder)s::text IS NULL OR worker_id IS NULL OR worker_id = %(holder)s::text)
    RETURNING instance_id
), i AS (
    UPDATE oms_instances
    SET results = CASE WHEN %(step_id)s::text IS NULL OR %(result)s::jsonb IS NULL THEN results
                       ELSE results || jsonb_build_object(%(step_id)s::text, %(result)s::jsonb) END,
        waiting = waiting || coalesce((SELECT jsonb_object_agg(j, (oms_instances.waiting ->> j)::int - 1)
                                       FROM unnest(%(joins)s::text[]) j), '{{}}'),
        steps_left = steps_left - %(steps_done)s,
        current_step = greatest(current_step, coalesce(%(current_step)s::int, current_step)),
        status = CASE WHEN %(instance_status)s::text IS NOT NULL THEN %(instance_status)s::text
                      WHEN steps_left - %(steps_done)s <= 0 THEN '{DONE}' ELSE status END,
        error = CASE WHEN %(instance_status)s::text IS NULL THEN error ELSE %(instance_error)s::text END,
        finished_at = CASE WHEN %(instance_status)s::text IS NOT NULL OR steps_left - %(steps_done)s <= 0
                           THEN %(now)s ELSE finished_at END,
        sla_check_at = CASE WHEN %(instance_status)s::text IS NULL AND steps_left - %(steps_done)s > 0
                            THEN sla_check_at ELSE {_FROZEN} END,
        updated_at = %(now)s
    FROM t WHERE oms_instances.id = t.instance_id
    RETURNING oms_instances.id, oms_instances.payload, oms_instances.waiting, oms_instances.status
), n AS (
    INSERT INTO oms_tasks
    SELECT r.* FROM i, jsonb_populate_recordset(NULL::oms_tasks, %(new_tasks)s::jsonb) r0,
        LATERAL jsonb_populate_record(r0, jsonb_build_object('payload', i.payload)) r
    WHERE r0.step_index <> ALL(%(joins)s::int[]) OR (i.waiting ->> r0.step_index::text)::int = 0
    RETURNING id, step_index, item_index
), c AS (
    UPDATE oms_tasks
    SET status = '{FAILED}', finished_at = %(now)s, error = %(cancel_error)s, sla_check_at = {_FROZEN}
    FROM i
    WHERE %(cancel_error)s::text IS NOT NULL AND oms_tasks.instance_id = i.id AND oms_tasks.id <> %(task_id)s
      AND oms_tasks.status IN ('{PENDING}', '{RUNNING}')
    RETURNING oms_tasks.instance_id, oms_tasks.id, oms_tasks.step_id, oms_tasks.attempt, oms_tasks.item_index
), e AS (
    INSERT INTO oms_events ({_EVENT_COLUMNS})
    SELECT {_EVENT_COLUMNS} FROM (
        SELECT x.*, x.position::numeric AS place
        FROM i, jsonb_to_recordset(%(events)s::jsonb) AS x(position int, instance_id text, task_id text, kind text,
                                                          step_id text, attempt int, at timestamptz, data jsonb)
        WHERE (x.kind <> '{WORKFLOW_DONE}' OR i.status = '{DONE}')
          AND (x.kind NOT IN ('{QUEUED}', '{RETRIED}') OR x.task_id IN (SELECT id FROM n))
        UNION ALL
        SELECT 0, c.instance_id, c.id, '{CANCELLED}', c.step_id, c.attempt, %(now)s,
            jsonb_strip_nulls(jsonb_build_object('reason', %(cancel_reason)s::text, 'item_index', c.item_index)),
            0.5 + row_number() OVER (ORDER BY c.step_id, c.item_index) / 1e6
        FROM c
    ) ev ORDER BY place
)
SELECT (SELECT count(*) FROM i) AS applied,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(step_index, item_index)), '[]') FROM n) AS offered
""")

#: A lapsed lease is not revived: the lapse ended the claim.
_LIVE = f"status = '{RUNNING}' AND (lease_expires_at IS NULL OR lease_expires_at >= %(now)s)"
EXTEND = (f"UPDATE oms_tasks SET lease_expires_at = %(lease_until)s WHERE id = %(task_id)s AND {_LIVE}"
          " AND (%(holder)s::text IS NULL OR worker_id = %(holder)s::text)")

HEARTBEAT = f"UPDATE oms_tasks SET lease_expires_at = %(lease_until)s WHERE id = ANY(%(task_ids)s::text[]) AND {_LIVE}"

LOOKUP = f"SELECT {_TASK} FROM oms_tasks t JOIN oms_instances i ON i.id = t.instance_id WHERE t.id = %(task_id)s"

STATE = _compact("""
SELECT t.status AS task_status, t.error AS task_error, i.id AS instance_id, i.status AS instance_status,
    t.worker_id, t.lease_expires_at
FROM oms_tasks t JOIN oms_instances i ON i.id = t.instance_id WHERE t.id = %(task_id)s
""")

LAPSED = _compact(f"""
SELECT {_TASK}, t.lost FROM oms_tasks t JOIN oms_instances i ON i.id = t.instance_id
WHERE t.status = '{RUNNING}' AND t.lease_expires_at < %(now)s AND (%(topic)s::text IS NULL OR t.topic = %(topic)s)
ORDER BY t.lease_expires_at LIMIT %(limit)s
""")


def _json_default(value: object) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def rows_json(rows: list[dict[str, Any]]) -> str:
    """Rows as the JSON document ``jsonb_populate_recordset`` reads."""
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def as_task(row: Any) -> Task:
    return Task(
        id=row.id, instance_id=row.instance_id, workflow_id=row.workflow_id, step_id=row.step_id, topic=row.topic,
        attempt=row.attempt, payload=row.payload, results=row.results, expires_at=_utc(row.expires_at),
        lease_expires_at=_utc(row.lease_expires_at), worker_id=row.worker_id, version=row.version,
        step_index=row.step_index, failures=row.failures, item=row.item, item_index=row.item_index,
    )


class PostgresStore:
    """The :class:`~oms.store.Store` contract, one autocommit statement per transition."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        with self.database.raw(self.database.autocommit) as conn, conn.cursor(row_factory=namedtuple_row) as cursor:
            yield cursor

    def _one(self, sql: str, params: dict[str, Any]) -> Any:
        with self._cursor() as cursor:
            return cursor.execute(sql, params, prepare=True).fetchone()

    def _all(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with self._cursor() as cursor:
            return cursor.execute(sql, params, prepare=True).fetchall()

    def _count(self, sql: str, params: dict[str, Any]) -> int:
        with self._cursor() as cursor:
            return cursor.execute(sql, params, prepare=True).rowcount

    @staticmethod
    def _claim_commit() -> str:
        return "on" if get_settings().durable_claims else "off"

    def start(self, workflow_id: str, version: int, instances: list[dict[str, Any]], tasks: list[dict[str, Any]],
              events: list[dict[str, Any]]) -> Started:
        row = self._one(START, {"workflow_id": workflow_id, "version": version, "instances": rows_json(instances),
                                "tasks": rows_json(tasks), "events": rows_json(events)})
        return Started(row.inserted, row.latest)

    def started_with(self, workflow_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        row = self._one(STARTED_WITH, {"workflow_id": workflow_id, "key": key})
        return None if row is None else (row.id, row.payload)

    def claim_step(self, instance_id: str, index: int, item_index: int | None, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        row = self._one(CLAIM_STEP if item_index is None else CLAIM_ITEM, {
            "instance_id": instance_id, "index": index, "item_index": item_index, "worker_id": worker_id, "now": now,
            "lease_until": lease_until, "due": now + timedelta(seconds=1), "synchronous_commit": self._claim_commit(),
        })
        return None if row is None else as_task(row)

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        row = self._one(CLAIM_TOPIC, {"topic": topic, "worker_id": worker_id, "now": now, "lease_until": lease_until,
                                      "synchronous_commit": self._claim_commit()})
        if row.id is None:
            return None, _utc(row.next_due)
        return as_task(row), None

    def finish(self, plan: Plan) -> list[Offered] | None:
        from ..engine.plan import apply

        move = plan.statement()
        if move is None:  # a map is involved: its items' results or its list are read under the lock
            with self.database.engine.begin() as conn:
                return apply(conn, plan)
        row = self._one(FINISH, {
            "instance_id": move.instance_id, "task_id": move.task_id, "now": move.now, "status": move.status.value,
            "result": None if move.result is None else json.dumps(move.result), "error": move.error,
            "lost": move.lost, "lapsed_before": move.lapsed_before, "holder": move.holder, "step_id": move.step_id,
            "steps_done": move.steps_done, "joins": move.joins, "unless_last": move.unless_last,
            "current_step": move.current_step,
            "instance_status": move.instance_status, "instance_error": move.instance_error,
            "cancel_error": move.cancel_error, "cancel_reason": move.cancel_reason,
            "new_tasks": rows_json(move.new_tasks),
            "events": rows_json([{**e, "position": n} for n, e in enumerate(move.events)]),
        })
        if not row.applied:
            if move.unless_last is not None:  # perhaps the mapped step's last item: it gathers their results
                with self.database.engine.begin() as conn:
                    return apply(conn, plan)
            return None
        return plan.offers([{"step_index": s, "item_index": i} for s, i in row.offered])

    def extend(self, task_id: str, now: datetime, lease_until: datetime, holder: str | None) -> bool:
        return self._count(EXTEND, {"task_id": task_id, "now": now, "lease_until": lease_until,
                                    "holder": holder}) > 0

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        return self._count(HEARTBEAT, {"task_ids": task_ids, "now": now, "lease_until": lease_until})

    def lookup(self, task_id: str) -> Task | None:
        row = self._one(LOOKUP, {"task_id": task_id})
        return None if row is None else as_task(row)

    def state(self, task_id: str) -> State | None:
        row = self._one(STATE, {"task_id": task_id})
        return None if row is None else State(row.task_status, row.task_error, row.instance_id, row.instance_status,
                                              row.worker_id, _utc(row.lease_expires_at))

    def lapsed(self, now: datetime, topic: str | None, limit: int) -> list[tuple[Task, int, str | None]]:
        rows = self._all(LAPSED, {"now": now, "topic": topic, "limit": limit})
        return [(as_task(row), row.lost, row.worker_id) for row in rows]
