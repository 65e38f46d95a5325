"""People's moves on human steps: claim, release, reassign, and disabling a person.

A human step is queued on the engine's ``oms.human`` topic, which no worker may
fetch and no message is published to. A person claims it from her inbox; her claim
has no lease and does not lapse: it ends when she completes or fails the step
(``complete_task(task_id, result, worker_id=user)``, as a pull worker does), releases
it, is disabled, or a supervisor reassigns the step. The SLA clock runs from the
moment the step became ready, whoever holds it.

Each move is one statement on PostgreSQL (the rows moved and their events, in one
CTE) and one transaction on SQLite; a move that cannot apply raises the typed error
that says why, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, Update, select, true

from ..durations import utcnow
from ..exceptions import (
    InstanceFinished,
    InvalidArgument,
    NotAHumanStep,
    NotAssigned,
    NotLeaseHolder,
    TaskAlreadyFinished,
    TaskClaimed,
    TaskNotClaimed,
    TaskNotFound,
    check_id,
)
from ..model.names import user_name
from ..model.task import Task
from ..states import EventKind, StepKind, TaskStatus
from ..store import moves, users
from ..store.candidates import candidates, claimable_by, visible_to
from ..store.db import Database, database, retrying
from ..store.portable import as_task
from ..store.tables import instances, tasks

__all__ = ["claim", "release", "reassign", "give", "disable_user"]


@contextmanager
def _connection(db: Database) -> Iterator[Connection]:
    """Where a person's move runs: on PostgreSQL an autocommit connection (the move is one statement, its own
    transaction: one round trip); on SQLite a transaction (the move's statements together)."""
    if db.dialect == "postgresql":
        with db.autocommit.connect() as conn:
            yield conn
    else:
        with db.engine.begin() as conn:
            yield conn


def _move(conn: Connection, statement: Update, kind: EventKind, now: datetime, **data: Any) -> list[Task]:
    """Run a move of human steps and log ``kind`` for each task it moved; return them as their holders see them."""
    if conn.dialect.name == "postgresql":
        moved = statement.cte("moved")
        logged = moves.log(moves.task_events(kind, moved, now, **data)).cte("logged")
        return [as_task(row) for row in conn.execute(moves.with_instance(moved).add_cte(logged))]
    ids = [row.id for row in conn.execute(statement)]
    if not ids:
        return []
    just = select(tasks).where(tasks.c.id.in_(ids)).subquery()
    conn.execute(moves.log(moves.task_events(kind, just, now, **data)))
    return [as_task(row) for row in conn.execute(moves.with_instance(tasks).where(tasks.c.id.in_(ids)))]


def _refuse(conn: Connection, task_id: str, user: users.User | None, *, holding: bool) -> None:
    """Raise why a move on ``task_id`` did not apply: ``user``'s (``holding``: the move needed her claim), or a
    supervisor's (``None``)."""
    row = conn.execute(select(tasks.c.topic, tasks.c.status, tasks.c.worker_id, instances.c.id.label("instance_id"),
                              instances.c.status.label("instance_status"))
                       .join_from(tasks, instances, instances.c.id == tasks.c.instance_id)
                       .where(tasks.c.id == task_id)).first()
    if row is None:
        raise TaskNotFound(task_id)
    if row.topic != StepKind.HUMAN.topic:
        raise NotAHumanStep(task_id, row.topic.removeprefix("oms.") if row.topic.startswith("oms.") else "worker")
    if row.status == TaskStatus.CANCELLED:
        raise InstanceFinished(row.instance_id, row.instance_status)
    if row.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
        raise TaskAlreadyFinished(task_id, row.status)
    if user is None:
        raise AssertionError(f"task {task_id} is an open human step: a reassignment applies")
    visible = conn.execute(select(true()).where(tasks.c.id == task_id, visible_to(conn.dialect.name, user))).first()
    if visible is None:
        raise NotAssigned(task_id, user.name)
    if holding and row.status == TaskStatus.PENDING:
        raise TaskNotClaimed(task_id, row.status)
    if holding:
        raise NotLeaseHolder(task_id, row.worker_id, user.name)
    raise TaskClaimed(task_id, row.worker_id)


def claim(task_id: str, user: str, *, now: datetime | None = None) -> Task:
    """Claim a human step for ``user`` (one of its candidates); return it, with its payload and earlier results.

    Claiming a step she holds already returns it again and changes nothing.

    Raises:
        UnknownUser: no such person, or she is disabled.
        TaskNotFound, NotAHumanStep, NotAssigned (not hers or her groups'), TaskClaimed (someone else holds it),
        TaskAlreadyFinished, InstanceFinished: nothing was changed.
    """
    check_id(task_id, "task")
    now = now or utcnow()
    db = database()

    name = user_name(user, "user name")

    def move() -> Task:
        with _connection(db) as conn:
            which = (tasks.c.id == task_id) & claimable_by(conn.dialect.name, name)
            claimed = _move(conn, moves.hold(which, name, now), moves.STARTED, now, worker_id=name)
            if claimed:
                return claimed[0]
            person = users.get(name, conn=conn)
            held = conn.execute(moves.with_instance(tasks).where(
                tasks.c.id == task_id, tasks.c.worker_id == person.name,
                tasks.c.status == TaskStatus.RUNNING, tasks.c.topic == StepKind.HUMAN.topic)).first()
            if held is not None:
                return as_task(held)
            _refuse(conn, task_id, person, holding=False)
            raise AssertionError("unreachable")

    return retrying(move, "claiming a human step")


def release(task_id: str, user: str, *, reason: str | None = None, now: datetime | None = None) -> Task:
    """Give a claimed human step back to its candidates' queue (its SLA clock runs on).

    Raises:
        UnknownUser, TaskNotFound, NotAHumanStep, TaskNotClaimed, NotLeaseHolder (someone else holds it),
        TaskAlreadyFinished, InstanceFinished: nothing was changed.
    """
    check_id(task_id, "task")
    now = now or utcnow()
    db = database()

    name = user_name(user, "user name")

    def move() -> Task:
        with _connection(db) as conn:
            which = (tasks.c.id == task_id) & (tasks.c.worker_id == name)
            released = _move(conn, moves.unhold(which), moves.RELEASED, now, worker_id=name,
                             reason=reason or "released")
            if released:
                return released[0]
            person = users.get(name, conn=conn)
            _refuse(conn, task_id, person, holding=True)
            raise AssertionError("unreachable")

    return retrying(move, "releasing a human step")


def reassign(task_id: str, *, user: str | None = None, groups: Sequence[str] | None = None, by: str,
             supervisor: str | None = None, now: datetime | None = None) -> Task:
    """Give a human step new candidates: ``user`` (who then holds it) and/or ``groups`` (whose queue it joins).

    A claim someone else held ends (``task.released``); the step's ``assign`` becomes
    the new candidates (``task.reassigned``, with ``by``, who did it). ``supervisor``:
    the person doing it must be among the step's candidates (named, or in one of its
    groups), checked under the step's lock (else ``NotAssigned``); ``None``: an
    operator's call, not checked (the HTTP API's admin tokens, the Python API).

    Raises:
        InvalidArgument: neither ``user`` nor ``groups``. UnknownUser: ``user`` is not a live person.
        TaskNotFound, NotAHumanStep, TaskAlreadyFinished, InstanceFinished: nothing was changed.
    """
    check_id(task_id, "task")
    if not user and not groups:
        raise InvalidArgument("reassign to a user, to groups, or both")
    new_groups = users.check_groups(list(groups or []))
    if not isinstance(by, str) or not by.strip() or len(by) > 255:
        raise InvalidArgument(f"by {by!r:.80}: who reassigns, as printable text of 1 to 255 characters")
    now = now or utcnow()
    db = database()

    def move() -> Task:
        with db.engine.begin() as conn:
            person = users.get(user, conn=conn) if user else None
            row = conn.execute(select(tasks.c.topic, tasks.c.status, tasks.c.worker_id, tasks.c.assign)
                               .where(tasks.c.id == task_id).with_for_update()).first()
            if row is None or row.topic != StepKind.HUMAN.topic or row.status not in (TaskStatus.PENDING,
                                                                                          TaskStatus.RUNNING):
                _refuse(conn, task_id, None, holding=False)
            assert row is not None
            if supervisor is not None:
                boss, assign = users.get(supervisor, conn=conn), row.assign or {}
                if boss.name not in assign.get("users", []) and not set(boss.groups) & set(assign.get("groups", [])):
                    raise NotAssigned(task_id, boss.name)
            holder = row.worker_id if row is not None and row.status == TaskStatus.RUNNING else None
            assign = candidates([person.name] if person else [], new_groups)
            moved = give(conn, task_id, assign, holder=holder, keep=person.name if person else None, by=by, now=now)
            if person is not None and holder != person.name:
                [moved] = _move(conn, moves.hold(tasks.c.id == task_id, person.name, now), moves.STARTED, now,
                                worker_id=person.name, by=by)
            return moved

    return retrying(move, "reassigning a human step")


def give(conn: Connection, task_id: str, assign: dict[str, list[str]], *, holder: str | None, by: str,
         now: datetime, keep: str | None = None) -> Task:
    """The reassign move, in the caller's transaction (a supervisor's, or an escalation ladder's rung): the claim
    ``holder`` held goes back (``task.released``; not when she is ``keep``, who will hold it), and the open human
    step's candidates become ``assign`` (``task.reassigned``, with ``by``). The step's row is locked already."""
    this = tasks.c.id == task_id
    if holder is not None and holder != keep:
        _move(conn, moves.unhold(this), moves.RELEASED, now, worker_id=holder, reason=f"reassigned by {by}")
    [moved] = _move(conn, moves.reassign(this, assign), EventKind.TASK_REASSIGNED, now, by=by,
                    users=",".join(assign["users"]) or None, groups=",".join(assign["groups"]) or None,
                    previous_holder=holder)
    return moved


def disable_user(name: str, *, now: datetime | None = None) -> list[Task]:
    """Disable a person: her claims go back to their queues and her token stops working; return the steps she held.

    Disabling her again changes nothing. Raises :class:`UnknownUser` if there is no such person.
    """
    now = now or utcnow()
    db = database()

    def move() -> list[Task]:
        with db.engine.begin() as conn:
            person = users.get(name, live=False, conn=conn)
            if person.disabled_at is None:
                users.disable(conn, person.name, now)
            return _move(conn, moves.unhold(tasks.c.worker_id == person.name), moves.RELEASED, now,
                         worker_id=person.name, reason="user disabled")

    return retrying(partial(move), "disabling a person")
