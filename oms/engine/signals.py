"""Signals: outside events (the portal's ``form_submitted``) that end the steps waiting for them.

A step with ``wait_for: <name>`` is queued on the engine's ``oms.wait`` topic, where no
worker fetches it; the signal of that name for its instance is its result. One
transaction, under the instance's row lock, decides what a signal does:

* its step is queued: the signal ends it, and the instance moves on;
* its step is not ready yet: the signal is kept, and taken in the transaction that
  makes the step ready (:func:`oms.engine.plan.apply`), never lost, never taken twice;
* the same ``idempotency_key`` again: the first signal's receipt, nothing changed;
* its step is done, or a signal of that name is kept already, or the instance has
  ended: refused, nothing stored.

Every signal taken or kept is in the event log (``signal.received``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from ..celery.dispatch import Dispatch, publish_all
from ..durations import utcnow
from ..exceptions import (
    InstanceFinished,
    InvalidArgument,
    SignalRefused,
    UnknownBusinessKey,
    UnknownInstance,
    UnknownSignal,
    check_id,
)
from ..model.names import check_name, user_name
from ..states import FINISHED_INSTANCE, EventKind, TaskStatus
from ..store import moves, signals
from ..store.catalog import load_definition
from ..store.db import database, retrying
from ..store.events import step_event
from ..store.portable import as_task
from ..store.tables import events, instances, tasks
from .checks import check_key, check_result
from .plan import dispatches, end_waiting

__all__ = ["Receipt", "signal", "signal_by_key"]


@dataclass(frozen=True)
class Receipt:
    """What became of a signal."""

    instance_id: str
    name: str
    #: The signal's id (the same for a repeated idempotency key).
    signal_id: int
    #: The waiting step's attempt it ended; ``None``: kept until that step is ready.
    task_id: str | None
    #: ``False``: its idempotency key had been used; this call changed nothing.
    new: bool = True


def _name(name: object) -> str:
    try:
        return check_name(name, "signal name")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _receive(session: Session, which: ColumnElement[bool], missing: Exception, name: str, data: dict[str, Any],
             key: str | None, now: datetime) -> tuple[Receipt, list[Dispatch]]:
    conn = session.connection()
    instance = conn.execute(select(instances.c.id, instances.c.workflow_id, instances.c.version, instances.c.status,
                                   *signals.seen_columns(key))
                            .select_from(signals.with_key(instances, key)).where(which)
                            .with_for_update(of=instances)).first()
    if instance is None:
        raise missing
    if key is not None and instance.seen_id is not None:
        return Receipt(instance.id, instance.seen_name, instance.seen_id, instance.seen_task_id, new=False), []
    if instance.status in FINISHED_INSTANCE:
        raise InstanceFinished(instance.id, instance.status)
    definition, _ = load_definition(session, instance.workflow_id, instance.version)
    waits = definition.waits_for()
    if name not in waits:
        raise UnknownSignal(instance.workflow_id, name, sorted(waits))
    index = waits[name]
    step = definition.steps[index]
    step.check_result(data)  # its form, if it has one
    attempts = conn.execute(moves.with_instance(tasks).add_columns(tasks.c.status)
                            .where(tasks.c.instance_id == instance.id, tasks.c.step_index == index)
                            .order_by(tasks.c.attempt.desc()).limit(1).with_for_update(of=tasks)).first()
    queued = attempts is not None and attempts.status == TaskStatus.PENDING
    if attempts is not None and not queued:
        raise SignalRefused(instance.id, name, f"step {step.id!r} is {attempts.status} already")
    if not queued and signals.kept(conn, instance.id, name) is not None:
        raise SignalRefused(instance.id, name, f"a signal {name!r} is kept for step {step.id!r} already")
    task = as_task(attempts) if queued else None
    kept = signals.keep(conn, instance.id, name, data, key, now, taken_by=None if task is None else task.id)
    conn.execute(events.insert(), [step_event(EventKind.SIGNAL_RECEIVED, instance.id, now, step.id, name=name,
                                              signal=kept.id, idempotency_key=key, kept=None if queued else True)])
    if task is None:
        return Receipt(instance.id, name, kept.id, None), []
    offered = end_waiting(conn, definition, task, kept, now)
    if offered is None:  # cannot be, under the task's lock; if it were, roll back rather than store it taken
        raise SignalRefused(instance.id, name, f"step {step.id!r} is no longer queued")
    return Receipt(instance.id, name, kept.id, task.id), dispatches(task, offered)


def _signal(which: ColumnElement[bool], missing: Exception, name: str, data: Any, key: str | None) -> Receipt:
    name = _name(name)
    stored = check_result({} if data is None else data) or {}
    key = None if key is None else check_key(key)
    db = database()

    def receive() -> tuple[Receipt, list[Dispatch]]:
        with db.sessions.begin() as session:
            return _receive(session, which, missing, name, stored, key, utcnow())

    receipt, dispatches = retrying(partial(receive), "receiving a signal")
    publish_all(dispatches)  # recorded already: one the broker refuses is left to the reconciler
    return receipt


def signal(instance_id: str, name: str, data: dict[str, Any] | None = None, *,
           idempotency_key: str | None = None) -> Receipt:
    """Send the signal ``name`` to an instance: the step waiting for it is done, with ``data`` as its result.

    A signal that comes before its step is ready is kept until it is. The same
    ``idempotency_key`` again returns the first call's receipt and changes nothing.

    Raises:
        InvalidArgument: a malformed id, name or key. UnknownSignal: no step of the workflow waits for ``name``.
        InvalidPayload: ``data`` is not a JSON object (or does not fit the step's ``form``, every field named).
        UnknownInstance. InstanceFinished: the instance has ended.
        SignalRefused: the step is done already, or a signal of that name is kept for it already.
    """
    check_id(instance_id, "instance")
    return _signal(instances.c.id == instance_id, UnknownInstance(instance_id), name, data, idempotency_key)


def signal_by_key(workflow_id: str, business_key: str, name: str, data: dict[str, Any] | None = None, *,
                  idempotency_key: str | None = None) -> Receipt:
    """:func:`signal` the unfinished instance of ``workflow_id`` started with ``business_key``.

    Raises what :func:`signal` raises, and:
        UnknownBusinessKey: no unfinished instance has the key (InstanceFinished: only a finished one has it).
    """
    user_name(workflow_id, "workflow id")
    key = check_key(business_key, "business key")
    which = ((instances.c.workflow_id == workflow_id) & (instances.c.business_key == key)
             & instances.c.finished_at.is_(None))
    try:
        return _signal(which, UnknownBusinessKey(workflow_id, key), name, data, idempotency_key)
    except UnknownBusinessKey:
        ended = _ended_with(workflow_id, key)
        if ended is not None:
            raise InstanceFinished(*ended) from None
        raise


def _ended_with(workflow_id: str, key: str) -> tuple[str, str] | None:
    """The newest finished instance of ``workflow_id`` with business key ``key``: ``(id, status)``."""
    def read() -> Any:
        with database().reader.connect() as conn:
            return conn.execute(select(instances.c.id, instances.c.status).where(
                instances.c.workflow_id == workflow_id, instances.c.business_key == key)
                .order_by(instances.c.created_at.desc()).limit(1)).first()

    row = retrying(read, "reading an instance by business key")
    return None if row is None else (row.id, row.status)
