"""The store on PostgreSQL: every transition one prepared statement (:mod:`oms.store.statements`), one round trip.

Each statement runs in autocommit on a pooled psycopg connection, prepared on first
use (``prepare=True``) and reused from then on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection

from ..model.deadlines import shown
from ..model.task import Place, Task
from ..settings import get_settings
from ..states import TaskStatus
from .contract import IN_TRANSACTION, Advance, CountItem, Finished, KeyInUse, Move, Offered, Retry, Started, State

if TYPE_CHECKING:
    from .db import Database

from .statements import statements


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
        attempt=row.attempt, payload=row.payload, results=row.results, expires_at=shown(_utc(row.expires_at)),
        lease_expires_at=_utc(row.lease_expires_at), worker_id=row.worker_id, version=row.version,
        step_index=row.step_index, failures=row.failures, item=row.item, item_index=row.item_index,
    )


def _move_params(move: Move) -> dict[str, Any]:
    """The parameters of a move's statement (every statement takes them all; each reads those it needs)."""
    ending, then = move.ending, move.then
    result = None if ending.result is None else json.dumps(ending.result)
    params: dict[str, Any] = {
        "instance_id": ending.instance_id, "task_id": ending.task_id, "now": ending.now, "result": result,
        "error": ending.error, "lost": ending.lost, "holder": ending.holder, "lapsed_before": ending.lapsed_before,
        "events": rows_json([{**e, "position": n} for n, e in enumerate(move.events)]),
    }
    if isinstance(then, Advance):
        params |= {"step_id": then.step_id, "joins": [str(j) for j in then.joins], "joins_at": then.joins,
                   "current_step": then.current_step, "new_tasks": rows_json(then.new_tasks)}
    elif isinstance(then, CountItem):
        params |= {"joins": [str(then.step_index)], "unless_last": str(then.step_index)}
    elif isinstance(then, Retry):
        params["new_tasks"] = rows_json([then.new_task])
    else:
        params |= {"instance_error": then.error, "cancel_reason": then.cancel_reason}
    return params


class PostgresStore:
    """The :class:`~oms.store.contract.Store` contract, one autocommit statement per transition."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.sql = statements()

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
        try:
            row = self._one(self.sql.start, {"workflow_id": workflow_id, "version": version,
                                             "instances": rows_json(instances), "tasks": rows_json(tasks),
                                             "events": rows_json(events)})
        except psycopg.errors.UniqueViolation as exc:
            raise KeyInUse(str(exc)) from None
        return Started(row.inserted, row.latest)

    def started_with(self, workflow_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        row = self._one(self.sql.started_with, {"workflow_id": workflow_id, "key": key})
        return None if row is None else (row.id, row.payload)

    def claim_step(self, instance_id: str, index: int, item_index: int | None, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        row = self._one(self.sql.claim_step if item_index is None else self.sql.claim_item, {
            "instance_id": instance_id, "index": index, "item_index": item_index, "worker_id": worker_id, "now": now,
            "lease_until": lease_until, "due": now + timedelta(seconds=1), "synchronous_commit": self._claim_commit(),
        })
        return None if row is None else as_task(row)

    def claim_items(self, instance_id: str, index: int, first: int, items: int, worker_id: str, now: datetime,
                    lease_until: datetime) -> list[Task]:
        rows = self._all(self.sql.claim_items, {
            "instance_id": instance_id, "index": index, "first": first, "items": items, "worker_id": worker_id,
            "now": now, "lease_until": lease_until, "due": now + timedelta(seconds=1),
            "synchronous_commit": self._claim_commit(),
        })
        return [as_task(row) for row in rows]

    def claim_steps(self, instance_id: str, indexes: list[int], worker_id: str, now: datetime,
                    lease_until: datetime) -> list[Task]:
        rows = self._all(self.sql.claim_steps, {
            "instance_id": instance_id, "indexes": indexes, "worker_id": worker_id, "now": now,
            "lease_until": lease_until, "due": now + timedelta(seconds=1), "synchronous_commit": self._claim_commit(),
        })
        return [as_task(row) for row in rows]

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        row = self._one(self.sql.claim_topic, {"topic": topic, "worker_id": worker_id, "now": now,
                                               "lease_until": lease_until,
                                               "synchronous_commit": self._claim_commit()})
        if row.id is None:
            return None, _utc(row.next_due)
        return as_task(row), None

    def claim_tasks(self, topic: str, worker_id: str, now: datetime, lease_until: datetime,
                    max_tasks: int) -> tuple[list[Task], datetime | None]:
        rows = self._all(self.sql.claim_tasks, {"topic": topic, "worker_id": worker_id, "now": now,
                                                "lease_until": lease_until, "max_tasks": max_tasks,
                                                "synchronous_commit": self._claim_commit()})
        if rows[0].id is None:
            return [], _utc(rows[0].next_due)
        return [as_task(row) for row in rows], None

    def finish(self, move: Move) -> Finished:
        statement = self.sql.finish.get((type(move.then), move.ending.status))
        if statement is None:
            return IN_TRANSACTION
        return self._finished(move, self._one(statement, _move_params(move)))

    @contextmanager
    def batch(self) -> Iterator[Connection]:
        """An autocommit connection whose transaction :meth:`finish_in` opens with an explicit ``BEGIN`` inside
        its pipeline (psycopg's own would cost a round trip of its own) and commits, at the end of the last one
        when it can; rolled back, before the connection goes back to its pool, if the block raises."""
        with self.database.autocommit.connect() as conn:
            raw = self._raw(conn)
            try:
                yield conn
                if raw.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    raw.execute("COMMIT")
            finally:
                if raw.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    try:
                        raw.execute("ROLLBACK")
                    except psycopg.Error:
                        conn.invalidate()  # never back to the pool inside a transaction

    @staticmethod
    def _raw(conn: Connection) -> psycopg.Connection[Any]:
        found: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        return found

    def finish_in(self, conn: Connection, moves: list[Move], *, last: bool = False) -> list[Finished]:
        """Every move's statement in the batch's transaction, sent in one pipeline (with its ``BEGIN``, and its
        ``COMMIT`` when ``last`` and no move may need the transactional path): one round trip.

        The server runs them one after the other, each seeing what the ones before it wrote (a join's counter
        counted down by a branch earlier in the batch)."""
        raw = self._raw(conn)
        cursors: list[psycopg.Cursor[Any] | None] = []
        with raw.pipeline():  # sent as one, answered as one when the block ends
            if raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                raw.execute("BEGIN")
            for move in moves:
                statement = self.sql.finish.get((type(move.then), move.ending.status))
                if statement is None:
                    cursors.append(None)
                    continue
                cursors.append(raw.cursor(row_factory=namedtuple_row))
                cursors[-1].execute(statement, _move_params(move), prepare=True)  # type: ignore[union-attr]
            if last and all(cursor is not None and not isinstance(move.then, CountItem)
                            for move, cursor in zip(moves, cursors, strict=True)):
                raw.execute("COMMIT")
        return [IN_TRANSACTION if cursor is None else self._finished(move, cursor.fetchone())
                for move, cursor in zip(moves, cursors, strict=True)]

    @staticmethod
    def _finished(move: Move, row: Any) -> Finished:
        """What a move's statement reported."""
        if not row.applied:
            # a mapped step's item that may be its last: the transactional path gathers the items' results
            return IN_TRANSACTION if isinstance(move.then, CountItem) else Finished(False)
        countdown = 0.0
        if isinstance(move.then, Retry):
            countdown = (move.then.new_task["dispatched_at"] - move.ending.now).total_seconds()
        return Finished(True, [Offered(step, item, countdown) for step, item in row.offered])

    def extend(self, task_id: str, now: datetime, lease_until: datetime, holder: str | None) -> bool:
        return self._count(self.sql.extend, {"task_id": task_id, "now": now, "lease_until": lease_until,
                                    "holder": holder}) > 0

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        return self._count(self.sql.heartbeat, {"task_ids": task_ids, "now": now, "lease_until": lease_until})

    def lookup(self, task_id: str) -> Task | None:
        row = self._one(self.sql.lookup, {"task_id": task_id})
        return None if row is None else as_task(row)

    def state(self, task_id: str) -> State | None:
        row = self._one(self.sql.state, {"task_id": task_id})
        return None if row is None else State(TaskStatus(row.task_status), row.instance_id, row.instance_status,
                                              row.worker_id, _utc(row.lease_expires_at), row.result, row.error)

    def lapsed(self, now: datetime, topic: str | None, limit: int) -> list[tuple[Task, int, str | None, Place]]:
        rows = self._all(self.sql.lapsed, {"now": now, "topic": topic, "limit": limit})
        return [(as_task(row), row.lost, row.worker_id, Place(row.ready_at.astimezone(UTC), row.light, row.rung))
                for row in rows]
