"""A person's inbox: the open human steps assigned to her or her groups, most urgent deadline first.

Each item carries its light and time left read from its clock now (as every reader
does, :mod:`oms.store.lights`), who holds it, and its form. Steps her groups' other
members hold are listed too, as taken, so that a page shows them taken the moment
they are; only a queued step, or one she holds, is hers to act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Select, select

from ..durations import utcnow
from ..exceptions import NotAssigned, TaskAlreadyFinished, TaskNotFound, check_id
from ..states import OPEN_TASK, StepKind, TaskStatus
from ..store import users
from ..store.candidates import visible_to
from ..store.catalog import definition
from ..store.db import database, retrying
from ..store.lights import seen_light
from ..store.tables import instances, tasks
from ..store.tables import literal as sql

__all__ = ["InboxItem", "HumanTask", "inbox", "human_task"]

#: The most steps one inbox lists (the most urgent).
MAX_INBOX = 500


@dataclass(frozen=True)
class InboxItem:
    """One human step as a person's inbox shows it."""

    task_id: str
    instance_id: str
    workflow_id: str
    step_id: str
    #: The instance's business key (the form number a citizen quotes), if it was started with one.
    business_key: str | None
    attempt: int
    #: Who holds it (``None``: queued, any candidate may claim it).
    claimed_by: str | None
    #: Whether it is hers to act on: queued (she may claim it), or held by her.
    actionable: bool
    light: str
    ready_at: datetime
    warn_at: datetime
    expires_at: datetime
    #: Seconds until ``expires_at`` (negative once late), frozen while its clock is paused.
    time_left_s: float
    paused: bool
    #: Who may claim it: ``{"users": [...], "groups": [...]}``.
    assign: dict[str, list[str]]
    #: The JSON Schema her result must satisfy (``None``: any JSON object).
    form: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {name: (value.isoformat() if isinstance(value, datetime) else value)
                for name, value in vars(self).items()}


@dataclass(frozen=True)
class HumanTask(InboxItem):
    """A human step with what a person needs to do it: the instance's payload and its earlier steps' results."""

    payload: dict[str, Any] | None = None
    results: dict[str, Any] | None = None


def _query(user: users.User, dialect: str) -> Select[Any]:
    return (select(tasks.c.id, tasks.c.instance_id, tasks.c.workflow_id, tasks.c.step_id, tasks.c.step_index,
                   tasks.c.attempt, tasks.c.status, tasks.c.worker_id, tasks.c.light, tasks.c.ready_at,
                   tasks.c.warn_at, tasks.c.expires_at, tasks.c.paused_at, tasks.c.assign,
                   instances.c.business_key, instances.c.version)
            .join_from(tasks, instances, instances.c.id == tasks.c.instance_id)
            .where(tasks.c.topic == StepKind.HUMAN.topic, tasks.c.status.in_([sql(s) for s in OPEN_TASK]),
                   visible_to(dialect, user)))


def _item(row: Any, user: users.User, now: datetime, kind: type[InboxItem] = InboxItem, **more: Any) -> Any:
    moment = row.paused_at or now
    holder = row.worker_id if row.status == TaskStatus.RUNNING else None
    form = definition(row.workflow_id, row.version).steps[row.step_index].form
    return kind(row.id, row.instance_id, row.workflow_id, row.step_id, row.business_key, row.attempt, holder,
                holder is None or holder == user.name, seen_light(row.light, row.warn_at, row.expires_at, None, moment),
                row.ready_at, row.warn_at, row.expires_at, round((row.expires_at - moment).total_seconds(), 3),
                row.paused_at is not None, row.assign or {"users": [], "groups": []}, form, **more)


def inbox(user: str, *, now: datetime | None = None, limit: int = MAX_INBOX) -> list[InboxItem]:
    """The open human steps ``user`` may see, most urgent deadline first (at most ``limit``).

    Raises :class:`~oms.exceptions.UnknownUser` if there is no such live person.
    """
    person = users.get(user)
    now = now or utcnow()

    def read() -> list[Any]:
        with database().reader.connect() as conn:
            return list(conn.execute(_query(person, conn.dialect.name).order_by(tasks.c.expires_at, tasks.c.id)
                                     .limit(limit)))

    return [_item(row, person, now) for row in retrying(read, "reading an inbox")]


def human_task(task_id: str, user: str, *, now: datetime | None = None) -> HumanTask:
    """One human step ``user`` may see, with its instance's payload and earlier results.

    Raises:
        UnknownUser, TaskNotFound: no such open human step. NotAssigned: not hers, nor her groups', to see.
    """
    check_id(task_id, "task")
    person = users.get(user)
    now = now or utcnow()

    def read() -> tuple[Any, str | None]:
        with database().reader.connect() as conn:
            row = conn.execute(_query(person, conn.dialect.name).add_columns(instances.c.payload, instances.c.results)
                               .where(tasks.c.id == task_id)).first()
            status = None if row is not None else conn.scalar(
                select(tasks.c.status).where(tasks.c.id == task_id, tasks.c.topic == StepKind.HUMAN.topic))
            return row, status

    row, status = retrying(partial(read), "reading a human step")
    if row is None:
        if status is None:
            raise TaskNotFound(task_id)
        if status in OPEN_TASK:
            raise NotAssigned(task_id, person.name)
        raise TaskAlreadyFinished(task_id, status)
    found: HumanTask = _item(row, person, now, HumanTask, payload=row.payload, results=row.results)
    return found
