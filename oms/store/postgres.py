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
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row

from ..db import Database
from ..settings import get_settings
from ..states import TaskStatus, task_event
from ..task import Task
from . import Finish, State

PENDING, RUNNING = TaskStatus.PENDING.value, TaskStatus.RUNNING.value
STARTED = task_event(TaskStatus.PENDING, TaskStatus.RUNNING)

#: What a worker's task is made of: the task's columns, then its instance's.
_TASK = ("t.id, t.instance_id, t.workflow_id, t.step_id, t.step_index, t.topic, t.attempt, t.failures, t.payload,"
         " t.expires_at, t.lease_expires_at, t.worker_id, i.results, i.version")
_RETURNING = ("id, instance_id, workflow_id, step_id, step_index, topic, attempt, failures, payload, expires_at,"
              " lease_expires_at, worker_id")
_EVENT_COLUMNS = "instance_id, task_id, kind, step_id, attempt, at, data"

START = f"""
WITH latest AS (
    SELECT max(version) AS version FROM oms_definitions WHERE workflow_id = %(workflow_id)s
), i AS (
    INSERT INTO oms_instances
    SELECT r.* FROM latest, jsonb_populate_recordset(NULL::oms_instances, %(instances)s::jsonb) r
    WHERE latest.version = %(version)s
    RETURNING id
), t AS (
    INSERT INTO oms_tasks
    SELECT r.* FROM jsonb_populate_recordset(NULL::oms_tasks, %(tasks)s::jsonb) r WHERE EXISTS (SELECT FROM i)
), e AS (
    INSERT INTO oms_events ({_EVENT_COLUMNS})
    SELECT {_EVENT_COLUMNS} FROM jsonb_populate_recordset(NULL::oms_events, %(events)s::jsonb)
    WHERE EXISTS (SELECT FROM i)
)
SELECT count(*) FROM i
"""

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
    SELECT instance_id, id, '{STARTED}', step_id, attempt, %(now)s, jsonb_build_object('worker_id', %(worker_id)s::text)
    FROM t
)"""


#: A push worker's claim of the step its message names. It waits for a row another
#: transaction holds (the scanner's), rather than skipping the step it was sent for.
CLAIM_STEP = _claim("instance_id = %(instance_id)s AND step_index = %(index)s AND ready_at <= %(due)s",
                    "FOR UPDATE") + f"""
SELECT {_TASK} FROM t JOIN oms_instances i ON i.id = t.instance_id
"""

#: A pull worker's claim of the oldest due step on a topic; concurrent callers skip
#: each other's rows. When nothing is due, says when something next will be.
CLAIM_TOPIC = _claim("topic = %(topic)s AND ready_at <= %(now)s", "FOR UPDATE SKIP LOCKED") + f"""
SELECT {_TASK}, NULL::timestamptz AS next_due FROM t JOIN oms_instances i ON i.id = t.instance_id
UNION ALL
SELECT {", ".join(["NULL"] * 14)}, least(
    (SELECT min(ready_at) FROM oms_tasks WHERE topic = %(topic)s AND status = '{PENDING}'),
    (SELECT min(lease_expires_at) FROM oms_tasks WHERE topic = %(topic)s AND status = '{RUNNING}'))
WHERE NOT EXISTS (SELECT FROM t)
"""

FINISH = f"""
WITH i0 AS (
    SELECT id FROM oms_instances WHERE id = %(instance_id)s FOR UPDATE
), t AS (
    UPDATE oms_tasks
    SET status = %(status)s, finished_at = %(now)s, result = %(result)s::jsonb, error = %(error)s,
        lost = coalesce(%(lost)s::int, lost),
        sla_check_at = CASE WHEN sla_check_at > %(now)s THEN NULL ELSE sla_check_at END
    WHERE id = %(task_id)s AND status = '{RUNNING}' AND EXISTS (SELECT FROM i0)
      AND CASE WHEN %(lapsed_before)s::timestamptz IS NULL
               THEN lease_expires_at IS NULL OR lease_expires_at >= %(now)s
               ELSE lease_expires_at < %(lapsed_before)s::timestamptz END
    RETURNING instance_id
), i AS (
    UPDATE oms_instances
    SET results = CASE WHEN %(step_id)s::text IS NULL OR %(result)s::jsonb IS NULL THEN results
                       ELSE results || jsonb_build_object(%(step_id)s::text, %(result)s::jsonb) END,
        current_step = coalesce(%(current_step)s::int, current_step),
        status = coalesce(%(instance_status)s::text, status),
        error = CASE WHEN %(instance_status)s::text IS NULL THEN error ELSE %(instance_error)s::text END,
        finished_at = CASE WHEN %(instance_status)s::text IS NULL THEN finished_at ELSE %(now)s END,
        sla_check_at = CASE WHEN %(instance_status)s::text IS NOT NULL AND sla_check_at > %(now)s THEN NULL
                            ELSE sla_check_at END,
        updated_at = %(now)s
    FROM t WHERE oms_instances.id = t.instance_id
    RETURNING oms_instances.id, oms_instances.payload
), n AS (
    INSERT INTO oms_tasks
    SELECT r.* FROM i, jsonb_populate_recordset(NULL::oms_tasks, %(new_tasks)s::jsonb) r0,
        LATERAL jsonb_populate_record(r0, jsonb_build_object('payload', i.payload)) r
), e AS (
    INSERT INTO oms_events ({_EVENT_COLUMNS})
    SELECT {_EVENT_COLUMNS} FROM jsonb_populate_recordset(NULL::oms_events, %(events)s::jsonb)
    WHERE EXISTS (SELECT FROM i)
)
SELECT count(*) FROM i
"""

#: A lapsed lease is not revived: the lapse ended the claim.
_LIVE = f"status = '{RUNNING}' AND (lease_expires_at IS NULL OR lease_expires_at >= %(now)s)"
EXTEND = f"UPDATE oms_tasks SET lease_expires_at = %(lease_until)s WHERE id = %(task_id)s AND {_LIVE}"

HEARTBEAT = f"UPDATE oms_tasks SET lease_expires_at = %(lease_until)s WHERE id = ANY(%(task_ids)s::text[]) AND {_LIVE}"

LOOKUP = f"SELECT {_TASK} FROM oms_tasks t JOIN oms_instances i ON i.id = t.instance_id WHERE t.id = %(task_id)s"

STATE = """
SELECT t.status AS task_status, t.error AS task_error, i.id AS instance_id, i.status AS instance_status,
    t.lease_expires_at
FROM oms_tasks t JOIN oms_instances i ON i.id = t.instance_id WHERE t.id = %(task_id)s
"""

LAPSED = f"""
SELECT {_TASK}, t.lost FROM oms_tasks t JOIN oms_instances i ON i.id = t.instance_id
WHERE t.status = '{RUNNING}' AND t.lease_expires_at < %(now)s AND (%(topic)s::text IS NULL OR t.topic = %(topic)s)
ORDER BY t.lease_expires_at LIMIT %(limit)s
"""


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
        step_index=row.step_index, failures=row.failures,
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
              events: list[dict[str, Any]]) -> bool:
        row = self._one(START, {"workflow_id": workflow_id, "version": version, "instances": rows_json(instances),
                                "tasks": rows_json(tasks), "events": rows_json(events)})
        return bool(row[0])

    def claim_step(self, instance_id: str, index: int, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        row = self._one(CLAIM_STEP, {"instance_id": instance_id, "index": index, "worker_id": worker_id, "now": now,
                                     "lease_until": lease_until, "due": now + timedelta(seconds=1),
                                     "synchronous_commit": self._claim_commit()})
        return None if row is None else as_task(row)

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        row = self._one(CLAIM_TOPIC, {"topic": topic, "worker_id": worker_id, "now": now, "lease_until": lease_until,
                                      "synchronous_commit": self._claim_commit()})
        if row.id is None:
            return None, _utc(row.next_due)
        return as_task(row), None

    def finish(self, move: Finish) -> bool:
        row = self._one(FINISH, {
            "instance_id": move.instance_id, "task_id": move.task_id, "now": move.now, "status": move.status.value,
            "result": None if move.result is None else json.dumps(move.result), "error": move.error,
            "lost": move.lost, "lapsed_before": move.lapsed_before, "step_id": move.step_id,
            "current_step": move.current_step, "instance_status": move.instance_status,
            "instance_error": move.instance_error, "new_tasks": rows_json(move.new_tasks),
            "events": rows_json(move.events),
        })
        return bool(row[0])

    def extend(self, task_id: str, now: datetime, lease_until: datetime) -> bool:
        return self._count(EXTEND, {"task_id": task_id, "now": now, "lease_until": lease_until}) > 0

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        return self._count(HEARTBEAT, {"task_ids": task_ids, "now": now, "lease_until": lease_until})

    def lookup(self, task_id: str) -> Task | None:
        row = self._one(LOOKUP, {"task_id": task_id})
        return None if row is None else as_task(row)

    def state(self, task_id: str) -> State | None:
        row = self._one(STATE, {"task_id": task_id})
        return None if row is None else State(row.task_status, row.task_error, row.instance_id, row.instance_status,
                                              _utc(row.lease_expires_at))

    def lapsed(self, now: datetime, topic: str | None, limit: int) -> list[tuple[Task, int, str | None]]:
        rows = self._all(LAPSED, {"now": now, "topic": topic, "limit": limit})
        return [(as_task(row), row.lost, row.worker_id) for row in rows]
