"""The store in SQLAlchemy Core: each transition a few statements in one transaction, on any dialect.

SQLite's store (its writers queue on ``BEGIN IMMEDIATE``, so a transaction is the
lock) and the reference the one-statement PostgreSQL store is tested against.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, case, func, insert, or_, select, update

from ..db import Database
from ..models import DefinitionRow, EventRow, InstanceRow, TaskRow
from ..rows import task_event_row
from ..states import TaskStatus, task_event
from ..task import Task
from . import Finish, State

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
    tasks.c.worker_id, instances.c.results, instances.c.version,
)


def as_task(row: Row[Any] | Any) -> Task:
    """A worker's task from a row of :data:`_TASK_COLUMNS` (or the same names)."""
    return Task(
        id=row.id, instance_id=row.instance_id, workflow_id=row.workflow_id, step_id=row.step_id, topic=row.topic,
        attempt=row.attempt, payload=row.payload, results=dict(row.results), expires_at=row.expires_at,
        lease_expires_at=row.lease_expires_at, worker_id=row.worker_id, version=row.version,
        step_index=row.step_index, failures=row.failures,
    )


def _freeze_case(column: Any, now: datetime) -> Any:
    """A row finished before its next SLA check keeps its light: the scanner need not look again.

    One finished after it stays due, so the scanner still records the late warning
    or breach, exactly once.
    """
    return case((column > now, None), else_=column)


class PortableStore:
    """The :class:`~oms.store.Store` contract in Core statements, one transaction per transition."""

    def __init__(self, database: Database) -> None:
        self.engine = database.engine

    def start(self, workflow_id: str, version: int, instances_: list[dict[str, Any]], tasks_: list[dict[str, Any]],
              events_: list[dict[str, Any]]) -> bool:
        with self.engine.begin() as conn:
            newest = select(func.max(definitions.c.version)).where(definitions.c.workflow_id == workflow_id)
            if conn.scalar(newest) != version:
                return False
            insert_rows(conn, instances_, tasks_, events_)
        return True

    def claim_step(self, instance_id: str, index: int, worker_id: str, now: datetime,
                   lease_until: datetime) -> Task | None:
        with self.engine.begin() as conn:
            return self._claim(conn, worker_id, now, lease_until, tasks.c.instance_id == instance_id,
                               tasks.c.step_index == index, tasks.c.ready_at <= now + timedelta(seconds=1))

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

    def finish(self, move: Finish) -> bool:
        with self.engine.begin() as conn:
            instance = conn.execute(
                select(instances.c.results, instances.c.payload).where(instances.c.id == move.instance_id)
                .with_for_update()
            ).first()
            task = conn.execute(
                select(tasks.c.status, tasks.c.lease_expires_at).where(tasks.c.id == move.task_id).with_for_update()
            ).first()
            if instance is None or task is None or task.status != RUNNING:
                return False
            lapsed = task.lease_expires_at is not None and task.lease_expires_at < (move.lapsed_before or move.now)
            if lapsed != (move.lapsed_before is not None):  # a sweep ends lapsed claims only; others, live ones
                return False
            values: dict[str, Any] = {"status": move.status.value, "finished_at": move.now, "result": move.result,
                                      "error": move.error, "sla_check_at": _freeze_case(tasks.c.sla_check_at, move.now)}
            if move.lost is not None:
                values["lost"] = move.lost
            conn.execute(update(tasks).where(tasks.c.id == move.task_id).values(**values))
            changes: dict[str, Any] = {"updated_at": move.now}
            if move.result is not None and move.step_id is not None:
                changes["results"] = {**instance.results, move.step_id: move.result}
            if move.current_step is not None:
                changes["current_step"] = move.current_step
            if move.instance_status is not None:
                changes.update(status=move.instance_status, error=move.instance_error, finished_at=move.now,
                               sla_check_at=_freeze_case(instances.c.sla_check_at, move.now))
            conn.execute(update(instances).where(instances.c.id == move.instance_id).values(**changes))
            offered = [{**row, "payload": instance.payload} for row in move.new_tasks]
            insert_rows(conn, [], offered, move.events)
        return True

    def extend(self, task_id: str, now: datetime, lease_until: datetime) -> bool:
        return self.heartbeat([task_id], now, lease_until) > 0

    def heartbeat(self, task_ids: list[str], now: datetime, lease_until: datetime) -> int:
        with self.engine.begin() as conn:
            done = conn.execute(update(tasks).where(tasks.c.id.in_(task_ids), tasks.c.status == RUNNING,
                                                    or_(tasks.c.lease_expires_at.is_(None),
                                                        tasks.c.lease_expires_at >= now))
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
                       tasks.c.lease_expires_at)
                .join(instances, instances.c.id == tasks.c.instance_id).where(tasks.c.id == task_id)
            ).first()
            return None if row is None else State(row.status, row.error, row.id, row.instance_status,
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
