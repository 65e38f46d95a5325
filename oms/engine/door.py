"""The narrow door through which workers reach the engine: claim, complete, fail, extend, pause, heartbeat, breach.

``act`` (push handlers, pull workers, heartbeats) calls only these functions,
:mod:`oms.engine.checks` and the public API. Each one owns its transaction and its
retry policy: while the database is unreachable it retries with backoff
(``OMS_DB_RETRY_SECONDS``), and a transition that cannot apply raises a typed
error and changes nothing.

The door decides what a transition does, from the definition: which step comes
next, whether a failure is retried or fails the instance (:mod:`oms.engine.plan`).
The store applies that decision in one statement on PostgreSQL, one transaction on
SQLite, under the precondition that the task is still as the worker saw it.

The functions here delegate to one :class:`Door` per process, which remembers the
tasks this process claimed (so a call by id needs no read, and knows its holder);
a forked child starts with a fresh one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select

from ..celery.dispatch import Dispatch, publish_all
from ..celery.tracked import backend_outcome, celery_id_of, stored_result
from ..durations import utcnow
from ..exceptions import (
    InstanceFinished,
    LeaseLost,
    NotLeaseHolder,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
    check_id,
)
from ..model.definitions import Definition
from ..model.task import Task
from ..settings import get_settings
from ..states import InstanceStatus, TaskStatus
from ..store import catalog
from ..store.db import TRANSIENT, database, retrying
from ..store.tables import tasks
from . import control, pauses
from .checks import check_reason, check_result, seconds, storable_reason
from .plan import Outcome, Plan, apply_in_transaction, dispatches, lost_claim

__all__ = [
    "Task", "Door", "LongPoll",
    "claim_step", "claim_topic", "release", "lookup", "complete", "fail", "extend", "pause", "resume_clock",
    "heartbeat", "heartbeat_interval", "breach", "sweep", "default_worker_id", "utcnow",
]

logger = logging.getLogger(__name__)


def default_worker_id() -> str:
    """This process's worker id (``host:pid``): what a pull claim records when the caller names none."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LongPoll:
    """The rules of a fetch's long poll, its waiting left to the caller (a broker queue for ``act``, the HTTP
    API's hub of waiters): claim; if nothing came, wait for an offer until ``max_wait`` has passed, or until
    something becomes claimable without a message (a retry's backoff ends, a lease runs out)."""

    def __init__(self, max_wait: float) -> None:
        self.deadline = time.monotonic() + max_wait

    def after(self, claimed: tuple[Task | None, datetime | None]) -> Task | float | None:
        """What follows a claim: the task claimed, seconds to wait for an offer before claiming again, or ``None``
        (nothing came in time)."""
        task, due = claimed
        remaining = self.deadline - time.monotonic()
        if task is not None:
            return task
        if remaining <= 0:
            return None
        if due is not None:
            remaining = min(remaining, max((due - utcnow()).total_seconds(), 0.0) + 0.01)
        return remaining


class Door:
    """One process's door: the tasks it claimed, and when it last swept each topic's lapsed claims."""

    #: Tasks remembered at most (the oldest are forgotten: a call by their id reads them).
    HELD_MAX = 10_000
    #: Seconds between lease sweeps of one topic by one process (the SLA scanner sweeps too).
    SWEEP_EVERY = 1.0

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: a forked child's door (a thread of the parent's may have held the lock)."""
        self._held: OrderedDict[str, Task] = OrderedDict()
        self._lock = threading.Lock()
        self._swept: dict[str, float] = {}

    # -- what this process holds ----------------------------------------------------------------------------------

    def _hold(self, task: Task | None) -> Task | None:
        if task is not None:
            with self._lock:
                self._held[task.id] = task
                while len(self._held) > self.HELD_MAX:
                    self._held.popitem(last=False)
        return task

    def _held_by_id(self, task_id: str) -> Task | None:
        with self._lock:
            return self._held.get(task_id)

    def _forget(self, task_id: str) -> None:
        with self._lock:
            self._held.pop(task_id, None)

    def _holder(self, task_id: str, worker_id: str | None) -> str:
        """Who must hold ``task_id``: ``worker_id`` when given; else the worker that claimed it here; else this
        process's own id, the one ``fetch_task`` records by default."""
        held = self._held_by_id(task_id)
        return worker_id or (held.worker_id if held else None) or default_worker_id()

    def _task(self, task: Task | str, worker_id: str | None) -> tuple[Task, str]:
        """The task a call is about (as this process claimed it, or read) and who must hold it."""
        if isinstance(task, Task):
            return task, worker_id or task.worker_id or default_worker_id()
        found = self.lookup(task)
        return found, self._holder(found.id, worker_id)

    # -- claims -----------------------------------------------------------------------------------------------------

    def claim_step(self, instance_id: str, index: int, worker_id: str, *, item_index: int | None = None,
                   now: datetime | None = None) -> Task | None:
        """Claim the queued attempt at step ``index`` (a mapped step's item ``item_index``) for a push worker,
        leased for ``OMS_WORKER_LEASE``.

        ``None`` is the normal answer to a redelivered or duplicated message: the step
        was claimed, finished or cancelled already, or its retry is not due yet. The
        worker's heartbeats keep the lease; a worker that dies lets it lapse, and the
        step is offered again.
        """
        now = now or utcnow()
        until = now + timedelta(seconds=get_settings().worker_lease)
        store = database().store
        return self._hold(retrying(partial(store.claim_step, instance_id, index, item_index, worker_id, now, until),
                                   "claiming a step"))

    def claim_topic(self, topic: str, worker_id: str, lease: timedelta, *,
                    now: datetime | None = None) -> tuple[Task | None, datetime | None]:
        """Claim the oldest due step on ``topic`` for a pull worker, leased until ``now + lease``.

        Returns the task, or ``None`` and when something next becomes claimable without
        a new message (a retry's backoff ends, a lease runs out). Lapsed leases on the
        topic are swept first, at most once a second.
        """
        now = now or utcnow()
        if time.monotonic() - self._swept.get(topic, 0.0) >= self.SWEEP_EVERY:
            self._swept[topic] = time.monotonic()
            publish_all(self.sweep(now=now, topic=topic))
        store = database().store
        task, due = retrying(lambda: store.claim_topic(topic, worker_id, now, now + lease), "claiming a task")
        self._hold(task)
        if task is None and due is not None:
            self._swept.pop(topic, None)  # something is due then: sweep on the next call
        return task, due

    def lookup(self, task_id: str) -> Task:
        """A task by id, whatever its status (its topic says who may work on it). Raises :class:`TaskNotFound`."""
        check_id(task_id, "task")
        held = self._held_by_id(task_id)
        if held is not None:
            return held
        store = database().store
        found = retrying(lambda: store.lookup(task_id), "reading a task")
        if found is None:
            raise TaskNotFound(task_id)
        return found

    # -- outcomes ---------------------------------------------------------------------------------------------------

    def _end(self, plan: Plan, what: str) -> list[Dispatch]:
        """Apply an ended attempt's plan; return what it offered, as dispatches (or raise why it did not apply)."""
        db = database()
        move = plan.move()
        finished = retrying(partial(db.store.finish, move), what) if move is not None else None
        if finished is None or finished.in_transaction:
            offered = retrying(partial(apply_in_transaction, db, plan), what)
        else:
            offered = finished.offered if finished.applied else None
        if offered is None:
            self._refuse(plan.task.id, plan.now, plan.outcome.holder)
        self._forget(plan.task.id)
        return dispatches(plan.task, offered or [])

    def complete(self, task: Task | str, result: dict[str, object] | None = None, *, worker_id: str | None = None,
                 now: datetime | None = None, chained: bool = False) -> list[Dispatch]:
        """Mark a running task done, store ``result`` and move its instance on; return what was published.

        The steps it makes ready are queued in the same statement and published after
        it: a straight run's next step by the push worker's Celery chain when
        ``chained``, everything else (branches of a fan-out, a join, a map's items) here.
        Only the worker holding the claim may complete it.

        Raises:
            TaskNotFound, TaskAlreadyFinished, LeaseLost, TaskNotClaimed, NotLeaseHolder, InstanceFinished:
                the task cannot be completed as it stands; nothing was changed.
            InvalidPayload: ``result`` is not a JSON object, or does not fit the step's ``form`` (``FormError``, every
                field named).
        """
        held, holder = self._task(task, worker_id)
        stored = check_result(result)
        definition = catalog.definition(held.workflow_id, held.version)
        definition.steps[held.step_index].check_result(stored)  # a human step's form
        dispatches = self._end(Plan(definition, held, Outcome.done(stored, holder), now or utcnow()),
                               "completing a task")
        if chained:
            carried = definition.graph.chained(held.step_index)
            dispatches = [d for d in dispatches if d.from_step != carried]
        publish_all(dispatches)  # recorded already: one the broker refuses is left to the reconciler
        return dispatches

    def fail(self, task: Task | str, reason: str, *, worker_id: str | None = None,
             now: datetime | None = None, retry: bool = True) -> Dispatch | None:
        """Mark a running task failed with ``reason``: retried per its step's rules, or the instance fails (and its
        other open steps are cancelled). Returns the retry that was published, if any.

        ``retry=False``: the instance fails whatever the step's ``retries`` (a tracked Celery task that gave up)."""
        held, holder = self._task(task, worker_id)
        check_reason(reason)
        definition = catalog.definition(held.workflow_id, held.version)
        outcome = Outcome.failed(reason, holder=holder, retry=retry)
        dispatches = self._end(Plan(definition, held, outcome, now or utcnow()),
                               "failing a task")
        publish_all(dispatches)  # recorded already: one the broker refuses is left to the reconciler
        return dispatches[0] if dispatches else None

    def _refuse(self, task_id: str, now: datetime, holder: str | None = None) -> None:
        """Raise the error that says why a transition on ``task_id`` did not apply."""
        store = database().store
        state = retrying(lambda: store.state(task_id), "reading a task")
        if state is None:
            raise TaskNotFound(task_id)
        if state.instance_status == InstanceStatus.CANCELLED or state.task_status is TaskStatus.CANCELLED:
            raise InstanceFinished(state.instance_id, state.instance_status)
        lapsed = state.lease_expires_at is not None and state.lease_expires_at < now
        if state.task_status is TaskStatus.LAPSED or (state.task_status is TaskStatus.RUNNING and lapsed):
            raise LeaseLost(task_id)  # swept or not: the lapse ended the claim
        if state.task_status in (TaskStatus.DONE, TaskStatus.FAILED):
            raise TaskAlreadyFinished(task_id, state.task_status)
        if state.task_status is not TaskStatus.RUNNING:
            raise TaskNotClaimed(task_id, state.task_status)
        if holder is not None and state.worker_id is not None and state.worker_id != holder:
            raise NotLeaseHolder(task_id, state.worker_id, holder)
        raise InstanceFinished(state.instance_id, state.instance_status)

    # -- leases -----------------------------------------------------------------------------------------------------

    def extend(self, task_id: str, lease: str | float | timedelta, *, worker_id: str | None = None,
               now: datetime | None = None) -> datetime:
        """Keep a claim for ``lease`` more from now; return the new expiry. Only the claim's holder may.

        Raises ``LeaseLost`` once the lease has lapsed, even before the step is offered again.
        """
        check_id(task_id, "task")
        now = now or utcnow()
        until = now + timedelta(seconds=seconds(lease, "lease", positive=True))
        holder = self._holder(task_id, worker_id)
        store = database().store
        if not retrying(lambda: store.extend(task_id, now, until, holder), "extending a lease"):
            self._refuse(task_id, now, holder)
        return until

    def release(self, task: Task, worker_id: str, *, now: datetime | None = None) -> list[Dispatch]:
        """Give back a claim its worker never received (an HTTP caller that went away): the step is offered again.

        The claim ends as a lapsed lease does (``task.lease_expired``, attempt + 1), at
        once, without counting against ``max_deliveries`` (the worker never saw the step).
        Only ``worker_id``'s live claim is released; returns what was published.
        """
        now = now or utcnow()
        db = database()
        ended = now - timedelta(microseconds=1)  # the lease ends just before now: the lapse ends the claim
        if not retrying(lambda: db.store.extend(task.id, now, ended, worker_id), "releasing a claim"):
            self._refuse(task.id, now, worker_id)

        def lost() -> int:
            with db.engine.connect() as conn:
                return int(conn.scalar(select(tasks.c.lost).where(tasks.c.id == task.id)) or 0)

        outcome = Outcome.lapsed(retrying(lost, "reading a task"), now, worker_id)
        definition = catalog.definition(task.workflow_id, task.version)
        dispatches = self._end(Plan(definition, task, outcome, now), "releasing a claim")
        publish_all(dispatches)
        return dispatches

    def heartbeat(self, task_ids: list[str], *, now: datetime | None = None) -> int:
        """Extend the leases of a live push worker's running claims by ``OMS_WORKER_LEASE``; return how many."""
        if not task_ids:
            return 0
        now = now or utcnow()
        until = now + timedelta(seconds=get_settings().worker_lease)
        return database().store.heartbeat(task_ids, now, until)

    def sweep(self, *, now: datetime | None = None, topic: str | None = None, limit: int = 100,
              on_error: Callable[[Task, BaseException], None] | None = None) -> list[Dispatch]:
        """Re-offer steps whose claim lapsed (worker died, pull lease ran out); return what to publish.

        A lost claim does not count against ``retries`` (the step did not fail, its
        worker went away) but against ``max_deliveries``: a step that keeps killing its
        worker fails with reason ``worker_lost`` and follows its failure rules. A step
        that cannot be swept is logged (and given to ``on_error``); the others are.
        """
        now = now or utcnow()
        store = database().store
        dispatches = []
        for task, lost_before, _worker in retrying(partial(store.lapsed, now, topic, limit), "finding lapsed leases"):
            try:
                definition = catalog.definition(task.workflow_id, task.version)
                outcome = self._settled(definition, task, now) or lost_claim(definition, task, lost_before + 1, now)
                if outcome.status is TaskStatus.CANCELLED:
                    control.cancel_workflow(task.instance_id, outcome.reason or "revoked")
                    continue
                dispatches += self._end(Plan(definition, task, outcome, now), "ending a lapsed claim")
            except TRANSIENT:
                raise
            except (LeaseLost, TaskAlreadyFinished, InstanceFinished, TaskNotClaimed):
                continue  # another sweep (or the worker, just in time) got there first
            except Exception as exc:
                logger.error("cannot sweep the lapsed claim of task %s (%s: %s)", task.id, type(exc).__name__, exc,
                             exc_info=exc)
                if on_error is not None:
                    on_error(task, exc)
        return dispatches

    @staticmethod
    def _settled(definition: Definition, task: Task, now: datetime) -> Outcome | None:
        """How a tracked step whose claim lapsed ended, as the Celery app's result backend says (its worker died
        between the task's end and the record); ``None``: not known there (or not tracked), the claim just lapsed."""
        if not definition.tracked:
            return None
        found = backend_outcome(celery_id_of(task.instance_id, task.step_index, task.payload))
        if found is None:
            return None
        state, value = found
        if state == "SUCCESS":
            return Outcome(TaskStatus.DONE, result=stored_result(value), lapsed_before=now)
        if state == "REVOKED":
            return Outcome(TaskStatus.CANCELLED, reason="revoked (the result backend says so)")
        reason = storable_reason(f"{type(value).__name__}: {value}" if isinstance(value, BaseException)
                                 else f"failed: {value!r}")
        return Outcome.failed(reason, retry=False, lapsed_before=now)

    # -- the SLA ----------------------------------------------------------------------------------------------------

    def pause(self, task_id: str, reason: str, *, worker_id: str | None = None, now: datetime | None = None) -> bool:
        """Stop a running step's SLA clock and park it (see :mod:`oms.engine.pauses`); ``False`` if it was paused
        already. The caller must hold the claim (as for :meth:`extend`); the parked step then has no holder, so
        whoever resumes or completes it later may."""
        return pauses.pause(task_id, check_reason(reason, "a pause's reason"),
                            worker_id=self._holder(task_id, worker_id), now=now or utcnow())

    def resume_clock(self, task_id: str, *, now: datetime | None = None) -> bool:
        """Run a paused step's clock again, its deadline later by the time paused; ``False`` if it was not paused."""
        return pauses.resume(task_id, now=now or utcnow())

    def breach(self, task_id: str, reason: str) -> None:
        """A push handler overran its SLA: record the breach once and fail the attempt (see
        :func:`oms.engine.control.breach`)."""
        publish_all(retrying(lambda: control.breach(task_id, reason, utcnow()), "recording an SLA breach"))


def heartbeat_interval() -> float:
    """Seconds between a push worker's heartbeats (``OMS_HEARTBEAT_INTERVAL``)."""
    return get_settings().heartbeat_interval


#: This process's door; a forked child's starts afresh.
_door = Door()
os.register_at_fork(after_in_child=_door.reset)

claim_step = _door.claim_step
claim_topic = _door.claim_topic
lookup = _door.lookup
complete = _door.complete
fail = _door.fail
extend = _door.extend
release = _door.release
heartbeat = _door.heartbeat
sweep = _door.sweep
pause = _door.pause
resume_clock = _door.resume_clock
breach = _door.breach
