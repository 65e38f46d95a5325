"""The store in SQLAlchemy Core: each transition the builders of :mod:`oms.store.moves`, in one transaction.

SQLite's store: its writers queue on ``BEGIN IMMEDIATE``, so a transaction is the
lock. A finished attempt is applied by the engine's transactional path
(:func:`oms.engine.plan.apply`), which runs the same builders with the counters
read under that lock.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, func, insert, select
from sqlalchemy.exc import IntegrityError

from ..model.deadlines import shown
from ..model.task import Place, Task
from ..states import TaskStatus
from . import moves
from .contract import IN_TRANSACTION, Finished, KeyInUse, Move, Started, State
from .tables import definitions, events, instances, literal, tasks

if TYPE_CHECKING:
    from .db import Database


def as_task(row: Row[Any] | Any) -> Task:
    """A worker's task from a row of :func:`oms.store.moves.with_instance`."""
    return Task(
        id=row.id, instance_id=row.instance_id, workflow_id=row.workflow_id, step_id=row.step_id, topic=row.topic,
        attempt=row.attempt, payload=row.payload, results=dict(row.results), expires_at=shown(row.expires_at),
        lease_expires_at=row.lease_expires_at, worker_id=row.worker_id, version=row.version,
        step_index=row.step_index, failures=row.failures, item=row.item, item_index=row.item_index,
    )


class PortableStore:
    """The :class:`~oms.store.contract.Store` contract in Core statements, one transaction per transition."""

    def __init__(self, database: Database) -> None:
        self.engine = database.engine

    def start(self, workflow_id: str, version: int, instances_: list[dict[str, Any]], tasks_: list[dict[str, Any]],
              events_: list[dict[str, Any]]) -> Started:
        with self.engine.begin() as conn:
            newest = select(func.max(definitions.c.version)).where(definitions.c.workflow_id == workflow_id)
            latest = conn.scalar(newest)
            if latest != version:
                return Started(0, latest)
            keys = [i["idempotency_key"] for i in instances_ if i.get("idempotency_key")]
            used = set(conn.scalars(select(instances.c.idempotency_key).where(
                instances.c.workflow_id == workflow_id, instances.c.idempotency_key.in_(keys)))) if keys else set()
            fresh = {i["id"] for i in instances_ if i.get("idempotency_key") not in used}
            try:
                insert_rows(conn, [i for i in instances_ if i["id"] in fresh],
                            [t for t in tasks_ if t["instance_id"] in fresh],
                            [e for e in events_ if e["instance_id"] in fresh])
            except IntegrityError as exc:
                raise KeyInUse(str(exc.orig)) from None
        return Started(len(fresh), latest)

    def started_with(self, workflow_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(instances.c.id, instances.c.payload).where(
                instances.c.workflow_id == workflow_id, instances.c.idempotency_key == key)).first()
            return None if row is None else (row.id, row.payload)

    def claim_step(self, instance_id: str, index: int, item_index: int | None, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        item = tasks.c.item_index.is_(None) if item_index is None else tasks.c.item_index == item_index
        with self.engine.begin() as conn:
            return _claim(conn, worker_id, now, lease_until, tasks.c.instance_id == instance_id,
                          tasks.c.step_index == index, item, tasks.c.ready_at <= now + timedelta(seconds=1))

    def claim_items(self, instance_id: str, index: int, first: int, items: int, worker_id: str, now: datetime,
                    lease_until: datetime) -> list[Task]:
        with self.engine.begin() as conn:
            return _claim_many(conn, worker_id, now, lease_until, tasks.c.instance_id == instance_id,
                               tasks.c.step_index == index, tasks.c.item_index >= first,
                               tasks.c.item_index < first + items, tasks.c.ready_at <= now + timedelta(seconds=1),
                               many=items)

    def claim_steps(self, instance_id: str, indexes: list[int], worker_id: str, now: datetime,
                    lease_until: datetime) -> list[Task]:
        with self.engine.begin() as conn:
            return _claim_many(conn, worker_id, now, lease_until, tasks.c.instance_id == instance_id,
                               tasks.c.step_index.in_(indexes), tasks.c.item_index.is_(None),
                               tasks.c.ready_at <= now + timedelta(seconds=1), many=len(indexes))

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        with self.engine.begin() as conn:
            task = _claim(conn, worker_id, now, lease_until, tasks.c.topic == topic, tasks.c.ready_at <= now)
            if task is not None:
                return task, None
            return None, _next_due(conn, topic)

    def claim_tasks(self, topic: str, worker_id: str, now: datetime, lease_until: datetime,
                    max_tasks: int) -> tuple[list[Task], datetime | None]:
        with self.engine.begin() as conn:
            found = _claim_many(conn, worker_id, now, lease_until, tasks.c.topic == topic, tasks.c.ready_at <= now,
                                many=max_tasks)
            return found, None if found else _next_due(conn, topic)

    def finish(self, move: Move) -> Finished:
        return IN_TRANSACTION  # the counters are read under the write lock: see oms.engine.plan.apply

    def batch(self) -> AbstractContextManager[Connection]:
        return self.engine.begin()

    def finish_in(self, conn: Connection, moves_: list[Move], *, last: bool = False) -> list[Finished]:
        return [IN_TRANSACTION for _ in moves_]  # as for finish: the transactional path, in the batch's transaction

    def extend(self, task_id: str, now: datetime, lease_until: datetime, holder: str | None) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(moves.extend_leases(tasks.c.id == task_id, now, lease_until, holder)).rowcount > 0

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(moves.extend_leases(tasks.c.id.in_(task_ids), now, lease_until)).rowcount)

    def lookup(self, task_id: str) -> Task | None:
        with self.engine.connect() as conn:
            row = conn.execute(moves.with_instance(tasks).where(tasks.c.id == task_id)).first()
            return None if row is None else as_task(row)

    def state(self, task_id: str) -> State | None:
        with self.engine.connect() as conn:
            row = conn.execute(moves.state(task_id)).first()
            return None if row is None else State(TaskStatus(row.task_status), row.instance_id, row.instance_status,
                                                  row.worker_id, row.lease_expires_at, row.result, row.error)

    def lapsed(self, now: datetime, topic: str | None, limit: int) -> list[tuple[Task, int, str | None, Place]]:
        with self.engine.connect() as conn:
            return [(as_task(row), row.lost, row.worker_id, Place(row.ready_at, row.light, row.rung))
                    for row in conn.execute(moves.lapsed(now, topic, limit))]


def _claim(conn: Connection, worker_id: str, now: datetime, lease_until: datetime, *where: Any) -> Task | None:
    """Claim the oldest due queued task matching ``where`` and log its ``task.started``, in the caller's transaction."""
    found = _claim_many(conn, worker_id, now, lease_until, *where)
    return found[0] if found else None


def _claim_many(conn: Connection, worker_id: str, now: datetime, lease_until: datetime, *where: Any,
                many: int | None = None) -> list[Task]:
    """Claim the oldest due queued task matching ``where`` (``many``: up to that many, oldest first) and log each
    one's ``task.started``, in the caller's transaction."""
    claimed = [row.id for row in conn.execute(moves.claim(worker_id, now, lease_until, *where, skip_locked=True,
                                                          many=many))]
    if not claimed:
        return []
    just = select(tasks).where(tasks.c.id.in_(claimed)).subquery()
    conn.execute(moves.log(moves.task_events(moves.STARTED, just, now, worker_id=worker_id)
                           .order_by(just.c.ready_at, just.c.id)))
    rows = conn.execute(moves.with_instance(tasks).where(tasks.c.id.in_(claimed))
                        .order_by(tasks.c.ready_at, tasks.c.id)).all()
    return [as_task(row) for row in rows]


def _next_due(conn: Connection, topic: str) -> datetime | None:
    """When something on ``topic`` next becomes claimable without a message: a retry's backoff ends, a lease runs
    out."""
    pending = conn.scalar(select(func.min(tasks.c.ready_at)).where(
        tasks.c.topic == topic, tasks.c.status == literal(TaskStatus.PENDING)))
    leased = conn.scalar(select(func.min(tasks.c.lease_expires_at)).where(
        tasks.c.topic == topic, tasks.c.status == literal(TaskStatus.RUNNING)))
    return min((t for t in (pending, leased) if t is not None), default=None)


def insert_rows(conn: Connection, instances_: list[dict[str, Any]], tasks_: list[dict[str, Any]],
                events_: list[dict[str, Any]]) -> None:
    """Insert new rows in foreign-key order, one executemany per table."""
    for table, rows in ((instances, instances_), (tasks, tasks_), (events, events_)):
        if rows:
            conn.execute(insert(table), rows)
