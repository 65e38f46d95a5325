"""The narrow door through which workers reach the engine: claim, complete, fail, extend, heartbeat, breach.

``act`` (push handlers, pull workers, heartbeats) calls only these functions and
the public API. Each one owns its transaction and its retry policy: while the
database is unreachable it retries with backoff (``OMS_DB_RETRY_SECONDS``), and a
transition that cannot apply raises a typed error and changes nothing.

The door decides what a transition does, from the definition: which step comes
next, whether a failure is retried or fails the instance. The store
(:mod:`oms.store`) applies that decision in one statement on PostgreSQL, one
transaction on SQLite, under the precondition that the task is still running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from .compiler import task_name
from .db import TRANSIENT, Database, database, retrying
from .definitions import Workflow, load_definition
from .dispatch import Dispatch, publish, publish_all
from .durations import parse_duration
from .exceptions import (
    InstanceFinished,
    InvalidArgument,
    LeaseLost,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
    check_id,
)
from .jsonvalue import check_text, json_object
from .names import user_name
from .rows import event, queued_event, task_event_row, task_row
from .settings import get_settings
from .states import (
    LEASE_EXPIRED,
    WORKER_LOST,
    InstanceStatus,
    TaskStatus,
    instance_event,
    task_event,
)
from .store import Finish
from .task import Task

__all__ = [
    "Task", "claim_step", "claim_topic", "complete", "fail", "extend", "heartbeat", "breach", "sweep",
    "check_result", "check_topic", "seconds", "task_name", "utcnow",
]

logger = logging.getLogger(__name__)

DONE = task_event(TaskStatus.RUNNING, TaskStatus.DONE)
FAILED = task_event(TaskStatus.RUNNING, TaskStatus.FAILED, "task.failed")
LEASE_LAPSED = task_event(TaskStatus.RUNNING, TaskStatus.FAILED, "task.lease_expired")
WORKFLOW_DONE = instance_event(InstanceStatus.RUNNING, InstanceStatus.DONE)
WORKFLOW_FAILED = instance_event(InstanceStatus.RUNNING, InstanceStatus.FAILED)


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_topic(topic: str) -> str:
    """``topic`` if it can be a queue name users may take, else :class:`InvalidArgument` naming it."""
    return user_name(topic, "topic")


def check_reason(reason: object, what: str = "a failure's reason") -> str:
    """A reason as stored: non-empty, storable, at most ``OMS_MAX_REASON_CHARS``; else :class:`InvalidArgument`."""
    return check_text(reason, what, get_settings().max_reason_chars, "OMS_MAX_REASON_CHARS")


def seconds(value: str | float | timedelta, what: str, *, positive: bool = False) -> float:
    """A duration argument in seconds, or :class:`InvalidArgument` naming ``what``."""
    try:
        found = parse_duration(value).total_seconds()
    except ValueError as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    if found < 0:
        raise InvalidArgument(f"{what} must not be negative, got {value!r}")
    if positive and found == 0:
        raise InvalidArgument(f"{what} must be positive, got {value!r}")
    return found


def check_result(result: Any) -> dict[str, Any] | None:
    """A step's result as stored: ``None`` or a JSON object within ``OMS_MAX_PAYLOAD_BYTES``."""
    if result is None:
        return None
    settings = get_settings()
    return json_object(result, what="result", max_bytes=settings.max_payload_bytes,
                       max_depth=settings.max_payload_depth)


def _definition(db: Database, workflow_id: str, version: int) -> Workflow:
    found = db.definitions.get((workflow_id, version))
    if found is None:
        with db.sessions.begin() as session:
            found, _ = load_definition(session, workflow_id, version)
    return found


# -- claims ---------------------------------------------------------------------


def claim_step(instance_id: str, index: int, worker_id: str, *, now: datetime | None = None) -> Task | None:
    """Claim the queued attempt at step ``index`` for a push worker, leased for ``OMS_WORKER_LEASE``.

    ``None`` is the normal answer to a redelivered or duplicated message: the step
    was claimed, finished or cancelled already, or its retry is not due yet. The
    worker's heartbeats (:func:`heartbeat`) keep the lease; a worker that dies lets
    it lapse, and the step is offered again.
    """
    now = now or utcnow()
    until = now + timedelta(seconds=get_settings().worker_lease)
    store = database().store
    return retrying(lambda: store.claim_step(instance_id, index, worker_id, now, until), "claiming a step")


#: Tasks this process claimed by topic, so that ``complete(task_id)`` needs no read first.
_held: OrderedDict[str, Task] = OrderedDict()
_HELD_MAX = 10_000
_held_lock = threading.Lock()
#: Seconds between lease sweeps of one topic by one process (the SLA scanner sweeps too).
_SWEEP_EVERY = 1.0
_swept: dict[str, float] = {}


def claim_topic(topic: str, worker_id: str, lease: timedelta, *,
                now: datetime | None = None) -> tuple[Task | None, datetime | None]:
    """Claim the oldest due step on ``topic`` for a pull worker, leased until ``now + lease``.

    Returns the task, or ``None`` and when something next becomes claimable without
    a new message (a retry's backoff ends, a lease runs out). Lapsed leases on the
    topic are swept first, at most once a second.
    """
    now = now or utcnow()
    if time.monotonic() - _swept.get(topic, 0.0) >= _SWEEP_EVERY:
        _swept[topic] = time.monotonic()
        publish_all(sweep(now=now, topic=topic))
    store = database().store
    task, due = retrying(lambda: store.claim_topic(topic, worker_id, now, now + lease), "claiming a task")
    if task is not None:
        with _held_lock:
            _held[task.id] = task
            while len(_held) > _HELD_MAX:
                _held.popitem(last=False)
    elif due is not None:
        _swept.pop(topic, None)  # something is due then: sweep on the next call
    return task, due


def _held_task(task: Task | str) -> Task:
    """The task a call by id is about: as claimed by this process, or read from the database."""
    if isinstance(task, Task):
        return task
    task_id = check_id(task, "task")
    with _held_lock:
        found = _held.get(task_id)
    if found is not None:
        return found
    store = database().store
    found = retrying(lambda: store.lookup(task_id), "reading a task")
    if found is None:
        raise TaskNotFound(task_id)
    return found


def _refuse(task_id: str, now: datetime) -> None:
    """Raise the error that says why a transition on ``task_id`` did not apply."""
    store = database().store
    state = retrying(lambda: store.state(task_id), "reading a task")
    if state is None:
        raise TaskNotFound(task_id)
    if state.instance_status == InstanceStatus.CANCELLED.value:
        raise InstanceFinished(state.instance_id, state.instance_status)
    if state.task_status == TaskStatus.FAILED.value and state.task_error == LEASE_EXPIRED:
        raise LeaseLost(task_id)
    lapsed = state.lease_expires_at is not None and state.lease_expires_at < now
    if state.task_status == TaskStatus.RUNNING.value and lapsed:  # not swept yet: the lapse ended the claim
        raise LeaseLost(task_id)
    if state.task_status in (TaskStatus.DONE.value, TaskStatus.FAILED.value):
        raise TaskAlreadyFinished(task_id, state.task_status)
    if state.task_status != TaskStatus.RUNNING.value:
        raise TaskNotClaimed(task_id, state.task_status)
    raise InstanceFinished(state.instance_id, state.instance_status)


def _apply(move: Finish, what: str) -> None:
    store = database().store
    if not retrying(lambda: store.finish(move), what):
        _refuse(move.task_id, move.now)
    with _held_lock:
        _held.pop(move.task_id, None)


# -- outcomes -------------------------------------------------------------------


def complete(task: Task | str, result: dict[str, Any] | None = None, *, now: datetime | None = None,
             chained: bool = False) -> Dispatch | None:
    """Mark a running task done, store ``result`` and move its instance on; return what was published.

    The next step is queued in the same statement and published after it, unless
    ``chained``: a push worker's Celery chain publishes it.

    Raises:
        TaskNotFound, TaskAlreadyFinished, LeaseLost, TaskNotClaimed, InstanceFinished:
            the task cannot be completed as it stands; nothing was changed.
        InvalidPayload: ``result`` is not a JSON object.
    """
    held = _held_task(task)
    stored = check_result(result)
    now = now or utcnow()
    db = database()
    definition = _definition(db, held.workflow_id, held.version)
    done = task_event_row(DONE, held, now)
    following = held.step_index + 1
    dispatch = None
    if following < len(definition.steps):
        offered = task_row(held.instance_id, None, definition, following, now)
        move = Finish(held.id, held.instance_id, now, TaskStatus.DONE, result=stored, step_id=held.step_id,
                      current_step=following, new_tasks=[offered], events=[done, queued_event(offered, now)])
        if not chained:
            dispatch = Dispatch(held.instance_id, held.workflow_id, held.version, following)
    else:
        move = Finish(held.id, held.instance_id, now, TaskStatus.DONE, result=stored, step_id=held.step_id,
                      instance_status=InstanceStatus.DONE.value,
                      events=[done, event(WORKFLOW_DONE, held.instance_id, now)])
    _apply(move, "completing a task")
    publish(dispatch)
    return dispatch


def _failure(db: Database, task: Task, reason: str, now: datetime, *, retry: bool = True, lost: int | None = None,
             lapsed_before: datetime | None = None) -> tuple[Finish, Dispatch | None]:
    """A failed attempt: retried per the step's ``retries`` and backoff, else the instance fails."""
    definition = _definition(db, task.workflow_id, task.version)
    step = definition.steps[task.step_index]
    failures = task.failures + 1
    failed = task_event_row(FAILED, task, now, reason=reason, lost=lost or None)
    if retry and failures <= step.retries:
        delay = step.retry_delay(failures)
        offered = task_row(task.instance_id, None, definition, task.step_index, now, attempt=task.attempt + 1,
                           failures=failures, delay=delay)
        move = Finish(task.id, task.instance_id, now, TaskStatus.FAILED, error=reason, lapsed_before=lapsed_before,
                      current_step=task.step_index, new_tasks=[offered], events=[failed, queued_event(offered, now)])
        return move, Dispatch(task.instance_id, task.workflow_id, task.version, task.step_index,
                              delay.total_seconds())
    error = f"step {task.step_id!r} failed after {failures} attempt(s): {reason}"
    move = Finish(task.id, task.instance_id, now, TaskStatus.FAILED, error=reason, lapsed_before=lapsed_before,
                  instance_status=InstanceStatus.FAILED.value, instance_error=error,
                  events=[failed, event(WORKFLOW_FAILED, task.instance_id, now, step_id=task.step_id, reason=reason)])
    return move, None


def fail(task: Task | str, reason: str, *, now: datetime | None = None) -> Dispatch | None:
    """Mark a running task failed with ``reason``: retried per its step's rules, or the instance fails.

    Returns the retry that was published, if any.
    """
    held = _held_task(task)
    check_reason(reason)
    move, dispatch = _failure(database(), held, reason, now or utcnow())
    _apply(move, "failing a task")
    publish(dispatch)
    return dispatch


# -- leases ---------------------------------------------------------------------


def extend(task_id: str, lease: str | float | timedelta, *, now: datetime | None = None) -> datetime:
    """Keep a claim for ``lease`` more from now; return the new expiry.

    Raises ``LeaseLost`` once the lease has lapsed, even before the step is offered again.
    """
    check_id(task_id, "task")
    now = now or utcnow()
    until = now + timedelta(seconds=seconds(lease, "lease", positive=True))
    store = database().store
    if not retrying(lambda: store.extend(task_id, now, until), "extending a lease"):
        _refuse(task_id, now)
    return until


def heartbeat(task_ids: list[str], *, now: datetime | None = None) -> int:
    """Extend the leases of a live push worker's running claims by ``OMS_WORKER_LEASE``; return how many."""
    if not task_ids:
        return 0
    now = now or utcnow()
    until = now + timedelta(seconds=get_settings().worker_lease)
    return database().store.heartbeat(task_ids, now, until)


def heartbeat_interval() -> float:
    """Seconds between a push worker's heartbeats (``OMS_HEARTBEAT_INTERVAL``)."""
    return get_settings().heartbeat_interval


def sweep(*, now: datetime | None = None, topic: str | None = None, limit: int = 100,
          on_error: Callable[[Task, BaseException], None] | None = None) -> list[Dispatch]:
    """Re-offer steps whose claim lapsed (worker died, pull lease ran out); return what to publish.

    A lost claim does not count against ``retries`` (the step did not fail, its
    worker went away) but against ``max_deliveries``: a step that keeps killing its
    worker fails with reason ``worker_lost`` and follows its failure rules. A step
    that cannot be swept is logged (and given to ``on_error``); the others are.
    """
    now = now or utcnow()
    db = database()
    dispatches = []
    for task, lost_before, worker in retrying(lambda: db.store.lapsed(now, topic, limit), "finding lapsed leases"):
        try:
            dispatch = _sweep_one(db, task, lost_before, worker, now)
        except TRANSIENT:
            raise
        except Exception as exc:
            logger.error("cannot sweep the lapsed claim of task %s (%s: %s)", task.id, type(exc).__name__, exc,
                         exc_info=exc)
            if on_error is not None:
                on_error(task, exc)
            continue
        if dispatch is not None:
            dispatches.append(dispatch)
    return dispatches


def _sweep_one(db: Database, task: Task, lost_before: int, worker: str | None, now: datetime) -> Dispatch | None:
    """End one lapsed claim; return what to publish, if it applied."""
    lost = lost_before + 1
    definition = _definition(db, task.workflow_id, task.version)
    if lost >= definition.steps[task.step_index].max_deliveries:
        move, dispatch = _failure(db, task, WORKER_LOST, now, lost=lost, lapsed_before=now)
    else:
        lapsed = task_event_row(LEASE_LAPSED, task, now, worker_id=worker, lost=lost)
        offered = task_row(task.instance_id, None, definition, task.step_index, now, attempt=task.attempt + 1,
                           failures=task.failures, lost=lost)
        move = Finish(task.id, task.instance_id, now, TaskStatus.FAILED, error=LEASE_EXPIRED, lapsed_before=now,
                      current_step=task.step_index, new_tasks=[offered],
                      events=[lapsed, queued_event(offered, now)])
        dispatch = Dispatch(task.instance_id, task.workflow_id, task.version, task.step_index)
    return dispatch if retrying(partial(db.store.finish, move), "ending a lapsed claim") else None


def breach(task_id: str, reason: str) -> None:
    """A push handler overran its SLA: record the breach once and fail the attempt (see :func:`oms.sla.breach_now`)."""
    from .sla import breach_now

    retrying(lambda: breach_now(task_id, reason), "recording an SLA breach")
