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
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from ..celery.compiler import task_name
from ..celery.dispatch import Dispatch, publish_all
from ..celery.forks import forget
from ..durations import parse_duration
from ..exceptions import (
    InstanceFinished,
    InvalidArgument,
    LeaseLost,
    NotLeaseHolder,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
    check_id,
)
from ..model.definitions import Workflow, load_definition
from ..model.jsonvalue import check_text, json_object, storable_text
from ..model.names import check_worker_id, user_name
from ..settings import get_settings
from ..states import LEASE_EXPIRED, WORKER_LOST, InstanceStatus, TaskStatus, is_ended_with_instance
from ..store.db import TRANSIENT, Database, database, retrying
from ..store.runs import ScanWatch
from .plan import LAPSED, Outcome, Plan
from .task import Task

__all__ = [
    "Task", "claim_step", "claim_topic", "release", "lookup", "complete", "fail", "extend", "pause", "resume",
    "heartbeat", "breach",
    "sweep",
    "check_result", "check_topic", "check_reason", "check_worker_id", "default_worker_id", "seconds", "task_name",
    "storable_reason", "utcnow",
    # a pull worker's upkeep: the missing-scan warning, and the parent's connections left alone after a fork
    "ScanWatch", "forget",
]

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_worker_id() -> str:
    """This process's worker id (``host:pid``): what a pull claim records when the caller names none."""
    return f"{socket.gethostname()}:{os.getpid()}"


def check_topic(topic: str) -> str:
    """``topic`` if it can be a queue name users may take, else :class:`InvalidArgument` naming it."""
    return user_name(topic, "topic")


def check_reason(reason: object, what: str = "a failure's reason") -> str:
    """A reason as stored: non-empty, storable, at most ``OMS_MAX_REASON_CHARS``; else :class:`InvalidArgument`."""
    return check_text(reason, what, get_settings().max_reason_chars, "OMS_MAX_REASON_CHARS")


def storable_reason(text: str) -> str:
    """A handler's failure text as it can always be recorded: cut to ``OMS_MAX_REASON_CHARS``, made storable.

    A handler's error text is the handler's (an exception message with a NUL in it,
    a 20 MB repr): the attempt fails once with it, rather than not at all.
    """
    return storable_text(text, get_settings().max_reason_chars) or "(no reason given)"


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


def claim_step(instance_id: str, index: int, worker_id: str, *, item_index: int | None = None,
               now: datetime | None = None) -> Task | None:
    """Claim the queued attempt at step ``index`` (a mapped step's item ``item_index``) for a push worker,
    leased for ``OMS_WORKER_LEASE``.

    ``None`` is the normal answer to a redelivered or duplicated message: the step
    was claimed, finished or cancelled already, or its retry is not due yet. The
    worker's heartbeats (:func:`heartbeat`) keep the lease; a worker that dies lets
    it lapse, and the step is offered again.
    """
    now = now or utcnow()
    until = now + timedelta(seconds=get_settings().worker_lease)
    store = database().store
    task = retrying(partial(store.claim_step, instance_id, index, item_index, worker_id, now, until),
                    "claiming a step")
    return _hold(task)


#: Tasks this process claimed, so that ``complete(task_id)`` needs no read first.
_held: OrderedDict[str, Task] = OrderedDict()
_HELD_MAX = 10_000
_held_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A thread of the parent's may have held the lock at the fork; it does not exist in the child."""
    global _held_lock
    _held_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

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
    _hold(task)
    if task is None and due is not None:
        _swept.pop(topic, None)  # something is due then: sweep on the next call
    return task, due


def _hold(task: Task | None) -> Task | None:
    """Remember a task this process claimed, so that calls by its id alone need no read and know its holder."""
    if task is not None:
        with _held_lock:
            _held[task.id] = task
            while len(_held) > _HELD_MAX:
                _held.popitem(last=False)
    return task


def _held_task(task: Task | str, worker_id: str | None) -> tuple[Task, str]:
    """The task a call is about (as this process claimed it, or read from the database) and who must hold it.

    The holder is ``worker_id`` when given; else the worker that claimed it, for a task
    this process claimed (or one handed in whole, as a push worker does); else this
    process's own id, the one ``fetch_task`` records by default.
    """
    if isinstance(task, Task):
        return task, worker_id or task.worker_id or default_worker_id()
    task_id = check_id(task, "task")
    with _held_lock:
        found = _held.get(task_id)
    if found is not None:
        return found, worker_id or found.worker_id or default_worker_id()
    store = database().store
    found = retrying(lambda: store.lookup(task_id), "reading a task")
    if found is None:
        raise TaskNotFound(task_id)
    return found, worker_id or default_worker_id()


def _refuse(task_id: str, now: datetime, holder: str | None = None) -> None:
    """Raise the error that says why a transition on ``task_id`` did not apply."""
    store = database().store
    state = retrying(lambda: store.state(task_id), "reading a task")
    if state is None:
        raise TaskNotFound(task_id)
    if state.instance_status == InstanceStatus.CANCELLED.value or is_ended_with_instance(state.task_error):
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
    if holder is not None and state.worker_id is not None and state.worker_id != holder:
        raise NotLeaseHolder(task_id, state.worker_id, holder)
    raise InstanceFinished(state.instance_id, state.instance_status)


def _end(plan: Plan, what: str) -> list[Dispatch]:
    """Apply an ended attempt's plan; return what it offered, as dispatches (or raise why it did not apply)."""
    store = database().store
    offered = retrying(partial(store.finish, plan), what)
    if offered is None:
        _refuse(plan.task.id, plan.now, plan.outcome.holder)
    with _held_lock:
        _held.pop(plan.task.id, None)
    task = plan.task
    return [Dispatch(task.instance_id, task.workflow_id, task.version, o.step_index, o.countdown, o.item_index)
            for o in offered or ()]


# -- outcomes -------------------------------------------------------------------


def complete(task: Task | str, result: dict[str, Any] | None = None, *, worker_id: str | None = None,
             now: datetime | None = None, chained: bool = False) -> list[Dispatch]:
    """Mark a running task done, store ``result`` and move its instance on; return what was published.

    The steps it makes ready are queued in the same statement and published after
    it: a straight run's next step by the push worker's Celery chain when
    ``chained``, everything else (branches of a fan-out, a join, a map's items) here.

    Only the worker holding the claim may complete it (see :func:`_held_task` for who that is).

    Raises:
        TaskNotFound, TaskAlreadyFinished, LeaseLost, TaskNotClaimed, NotLeaseHolder, InstanceFinished:
            the task cannot be completed as it stands; nothing was changed.
        InvalidPayload: ``result`` is not a JSON object.
    """
    held, holder = _held_task(task, worker_id)
    stored = check_result(result)
    definition = _definition(database(), held.workflow_id, held.version)
    dispatches = _end(Plan(definition, held, Outcome.done(stored, holder), now or utcnow()), "completing a task")
    if chained:
        carried = definition.graph.chained(held.step_index)
        dispatches = [d for d in dispatches if d.from_step != carried]
    publish_all(dispatches)  # recorded already: one the broker refuses is left to the reconciler
    return dispatches


def fail(task: Task | str, reason: str, *, worker_id: str | None = None,
         now: datetime | None = None) -> Dispatch | None:
    """Mark a running task failed with ``reason``: retried per its step's rules, or the instance fails
    (and its other open steps are cancelled).

    Returns the retry that was published, if any.
    """
    held, holder = _held_task(task, worker_id)
    check_reason(reason)
    definition = _definition(database(), held.workflow_id, held.version)
    dispatches = _end(Plan(definition, held, Outcome.failed(reason, holder=holder), now or utcnow()),
                      "failing a task")
    publish_all(dispatches)  # recorded already: one the broker refuses is left to the reconciler
    return dispatches[0] if dispatches else None


# -- leases ---------------------------------------------------------------------


def extend(task_id: str, lease: str | float | timedelta, *, worker_id: str | None = None,
           now: datetime | None = None) -> datetime:
    """Keep a claim for ``lease`` more from now; return the new expiry. Only the claim's holder may.

    Raises ``LeaseLost`` once the lease has lapsed, even before the step is offered again.
    """
    check_id(task_id, "task")
    now = now or utcnow()
    until = now + timedelta(seconds=seconds(lease, "lease", positive=True))
    with _held_lock:
        held = _held.get(task_id)
    holder = worker_id or (held.worker_id if held else None) or default_worker_id()
    store = database().store
    if not retrying(lambda: store.extend(task_id, now, until, holder), "extending a lease"):
        _refuse(task_id, now, holder)
    return until


def pause(task_id: str, reason: str, *, worker_id: str | None = None, now: datetime | None = None) -> bool:
    """Stop a running step's SLA clock and park it (see :mod:`oms.clocks`); ``False`` if it was paused already.

    The caller must hold the claim (``worker_id``, as for :func:`extend`); the parked
    step then has no holder, so whoever resumes or completes it later may.
    """
    from . import pauses as clocks

    with _held_lock:
        held = _held.get(task_id)
    holder = worker_id or (held.worker_id if held else None) or default_worker_id()
    return clocks.pause(task_id, check_reason(reason, "a pause's reason"), worker_id=holder, now=now or utcnow())


def resume(task_id: str, *, now: datetime | None = None) -> bool:
    """Run a paused step's clock again, its deadline later by the time paused; ``False`` if it was not paused."""
    from . import pauses as clocks

    return clocks.resume(task_id, now=now or utcnow())


def release(task: Task, worker_id: str, *, now: datetime | None = None) -> list[Dispatch]:
    """Give back a claim its worker never received (an HTTP caller that went away): the step is offered again.

    The claim ends as a lapsed lease does (``task.lease_expired``, attempt + 1), at
    once, without counting against ``max_deliveries`` (the worker never saw the step).
    Only ``worker_id``'s live claim is released; returns what was published.
    """
    from ..store.tables import TaskRow

    now = now or utcnow()
    db = database()
    store = db.store
    ended = now - timedelta(microseconds=1)  # the lease ends just before now: the lapse ends the claim
    if not retrying(lambda: store.extend(task.id, now, ended, worker_id), "releasing a claim"):
        _refuse(task.id, now, worker_id)

    def lost() -> int:
        with db.sessions.begin() as session:
            return int(session.get_one(TaskRow, task.id).lost)

    outcome = Outcome(LAPSED, reason=LEASE_EXPIRED, lost=retrying(lost, "reading a task"), lapsed_before=now,
                      holder=worker_id)
    definition = _definition(db, task.workflow_id, task.version)
    dispatches = _end(Plan(definition, task, outcome, now), "releasing a claim")
    publish_all(dispatches)
    return dispatches


def lookup(task_id: str) -> Task:
    """A task by id, whatever its status (its topic says who may work on it). Raises :class:`TaskNotFound`."""
    check_id(task_id, "task")
    with _held_lock:
        held = _held.get(task_id)
    if held is not None:
        return held
    store = database().store
    found = retrying(lambda: store.lookup(task_id), "reading a task")
    if found is None:
        raise TaskNotFound(task_id)
    return found


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
    for task, lost_before, _worker in retrying(partial(db.store.lapsed, now, topic, limit), "finding lapsed leases"):
        try:
            dispatches += _sweep_one(db, task, lost_before, now)
        except TRANSIENT:
            raise
        except Exception as exc:
            logger.error("cannot sweep the lapsed claim of task %s (%s: %s)", task.id, type(exc).__name__, exc,
                         exc_info=exc)
            if on_error is not None:
                on_error(task, exc)
    return dispatches


def _sweep_one(db: Database, task: Task, lost_before: int, now: datetime) -> list[Dispatch]:
    """End one lapsed claim; return what to publish, if it applied."""
    lost = lost_before + 1
    definition = _definition(db, task.workflow_id, task.version)
    if lost >= definition.steps[task.step_index].max_deliveries:
        outcome = Outcome.failed(WORKER_LOST, lost=lost, lapsed_before=now)
    else:
        outcome = Outcome.lapsed(lost, now)
    offered = retrying(partial(db.store.finish, Plan(definition, task, outcome, now)), "ending a lapsed claim")
    return [Dispatch(task.instance_id, task.workflow_id, task.version, o.step_index, o.countdown, o.item_index)
            for o in offered or ()]


def breach(task_id: str, reason: str) -> None:
    """A push handler overran its SLA: record the breach once and fail the attempt (see :func:`oms.sla.breach_now`)."""
    from ..sla.scanner import breach_now

    retrying(lambda: breach_now(task_id, reason), "recording an SLA breach")
