"""The store in SQLAlchemy Core: each transition a few statements in one transaction, on any dialect.

SQLite's store (its writers queue on ``BEGIN IMMEDIATE``, so a transaction is the
lock) and the reference the one-statement PostgreSQL store is tested against.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Row, Table, func, insert, or_, select, update

from ..engine.rows import task_event_row
from ..engine.task import Task
from ..states import TaskStatus, task_event
from .db import Database
from .tables import DefinitionRow, EventRow, InstanceRow, TaskRow

if TYPE_CHECKING:
    from ..engine.plan import Offered, Plan
from . import Started, State

tasks = cast(Table, TaskRow.__table__)
instances = cast(Table, InstanceRow.__table__)
events = cast(Table, EventRow.__table__)
definitions = cast(Table, DefinitionRow.__table__)

PENDING, RUNNING = TaskStatus.PENDING.value, TaskStatus.RUNNING.value
STARTED = task_event(TaskStatus.PENDING, TaskStatus.RUNNING)

#: The task columns a worker's :class:`~oms.task.Task` is made of, plus its instance's.
_TASK_COLUMNS = (
    tasks.c.id, tasks.c.instance_id, tasks.c.workflow_id, tasks.c.step_id, tasks.c.step_index, tasks.c.topic,
    tasks.c.attempt, tasks.c.failures, tasks.c.payload, tasks.c.expires_at, tasks.c.lease_expires_at,
    tasks.c.worker_id, tasks.c.item_index, tasks.c.item, instances.c.results, instances.c.version,
)


def as_task(row: Row[Any] | Any) -> Task:
    """A worker's task from a row of :data:`_TASK_COLUMNS` (or the same names)."""
    return Task(
        id=row.id, instance_id=row.instance_id, workflow_id=row.workflow_id, step_id=row.step_id, topic=row.topic,
        attempt=row.attempt, payload=row.payload, results=dict(row.results), expires_at=row.expires_at,
        lease_expires_at=row.lease_expires_at, worker_id=row.worker_id, version=row.version,
        step_index=row.step_index, failures=row.failures, item=row.item, item_index=row.item_index,
    )


class PortableStore:
    """The :class:`~oms.store.Store` contract in Core statements, one transaction per transition."""

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
            insert_rows(conn, [i for i in instances_ if i["id"] in fresh],
                        [t for t in tasks_ if t["instance_id"] in fresh],
                        [e for e in events_ if e["instance_id"] in fresh])
        return Started(len(fresh), latest)

    def started_with(self, workflow_id: str, key: str) -> tuple[str, dict[str, Any]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(instances.c.id, instances.c.payload).where(
                instances.c.workflow_id == workflow_id, instances.c.idempotency_key == key)).first()
            return None if row is None else (row.id, row.payload)

    def claim_step(self, instance_id: str, index: int, item_index: int | None, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        with self.engine.begin() as conn:
            return self._claim(conn, worker_id, now, lease_until, tasks.c.instance_id == instance_id,
                               tasks.c.step_index == index, tasks.c.item_index.is_(None) if item_index is None
                               else tasks.c.item_index == item_index, tasks.c.ready_at <= now + timedelta(seconds=1))

    def claim_topic(self, topic: str, worker_id: str, now: datetime,
                    lease_until: datetime) -> tuple[Task | None, datetime | None]:
        with self.engine.begin() as conn:
            task = self._claim(conn, worker_id, now, lease_until, tasks.c.topic == topic, tasks.c.ready_at <= now)
            if task is not None:
                return task, None
            pending = conn.scalar(select(func.min(tasks.c.ready_at)).where(tasks.c.topic == topic,
                                                                          tasks.c.status == PENDING))
            leased = conn.scalar(select(func.min(tasks.c.lease_expires_at)).where(tasks.c.topic == topic,
                                                                                 tasks.c.status == RUNNING))
            return None, min((t for t in (pending, leased) if t is not None), default=None)

    def _claim(self, conn: Connection, worker_id: str, now: datetime, lease_until: datetime,
               *where: Any) -> Task | None:
        row = conn.execute(
            select(*_TASK_COLUMNS).join(instances, instances.c.id == tasks.c.instance_id)
            .where(tasks.c.status == PENDING, *where).order_by(tasks.c.ready_at).limit(1)
            .with_for_update(of=tasks, skip_locked=True)
        ).first()
        if row is None:
            return None
        conn.execute(update(tasks).where(tasks.c.id == row.id).values(
            status=RUNNING, worker_id=worker_id, started_at=now, lease_expires_at=lease_until))
        task = as_task(row)
        conn.execute(insert(events), [task_event_row(STARTED, task.__dict__, now, worker_id=worker_id)])
        return Task(**{**task.__dict__, "lease_expires_at": lease_until, "worker_id": worker_id})

    def finish(self, plan: Plan) -> list[Offered] | None:
        from ..engine.plan import apply

        with self.engine.begin() as conn:
            return apply(conn, plan)

    def extend(self, task_id: str, now: datetime, lease_until: datetime, holder: str | None) -> bool:
        return self._extend([task_id], now, lease_until, holder) > 0

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        return self._extend(task_ids, now, lease_until, None)

    def _extend(self, task_ids: list[str], now: datetime, lease_until: datetime, holder: str | None) -> int:
        """Move the leases of running, not lapsed claims (held by ``holder``, when given)."""
        held = [] if holder is None else [tasks.c.worker_id == holder]
        with self.engine.begin() as conn:
            done = conn.execute(update(tasks).where(tasks.c.id.in_(task_ids), tasks.c.status == RUNNING,
                                                    or_(tasks.c.lease_expires_at.is_(None),
                                                        tasks.c.lease_expires_at >= now), *held)
                                .values(lease_expires_at=lease_until))
            return int(done.rowcount)

    def lookup(self, task_id: str) -> Task | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_TASK_COLUMNS).join(instances, instances.c.id == tasks.c.instance_id)
                               .where(tasks.c.id == task_id)).first()
            return None if row is None else as_task(row)

    def state(self, task_id: str) -> State | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(tasks.c.status, tasks.c.error, instances.c.id, instances.c.status.label("instance_status"),
                       tasks.c.worker_id, tasks.c.lease_expires_at)
                .join(instances, instances.c.id == tasks.c.instance_id).where(tasks.c.id == task_id)
            ).first()
            return None if row is None else State(row.status, row.error, row.id, row.instance_status, row.worker_id,
                                                  row.lease_expires_at)

    def lapsed(self, now: datetime, topic: str | None, limit: int) -> list[tuple[Task, int, str | None]]:
        query = (select(*_TASK_COLUMNS, tasks.c.lost).join(instances, instances.c.id == tasks.c.instance_id)
                 .where(tasks.c.status == RUNNING, tasks.c.lease_expires_at < now)
                 .order_by(tasks.c.lease_expires_at).limit(limit))
        if topic is not None:
            query = query.where(tasks.c.topic == topic)
        with self.engine.connect() as conn:
            return [(as_task(row), row.lost, row.worker_id) for row in conn.execute(query)]


def insert_rows(conn: Connection, instances_: list[dict[str, Any]], tasks_: list[dict[str, Any]],
                events_: list[dict[str, Any]]) -> None:
    """Insert new rows in foreign-key order, one executemany per table."""
    for table, rows in ((instances, instances_), (tasks, tasks_), (events, events_)):
        if rows:
            conn.execute(insert(table), rows)
