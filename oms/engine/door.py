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

Batches take the same paths: :meth:`Door.claim_tasks` claims many steps in one
statement, :meth:`Door.complete_many` and :meth:`Door.fail_many` apply each task's
plan, the one a single call makes, in one transaction (:mod:`oms.engine.batches`),
and refuse each task that cannot end with the error the single call would raise.
Single completions and failures made by several threads at once share transactions the
same way, unasked (group commit, :mod:`oms.engine.gather`): an API process serving many
HTTP workers, a push worker with a threads pool. A lone caller goes alone, at once.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Literal

from sqlalchemy import select

from ..celery.dispatch import Dispatch, publish_all
from ..celery.tracked import backend_outcome, celery_id_of, stored_result
from ..durations import utcnow
from ..exceptions import (
    BrokerUnavailable,
    ConfigurationError,
    InstanceFinished,
    LeaseLost,
    NotLeaseHolder,
    OmsError,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
    check_id,
)
from ..model.definitions import Definition
from ..model.task import Place, Task, TaskOutcome
from ..settings import get_settings
from ..states import InstanceStatus, TaskStatus
from ..store import catalog
from ..store.contract import Offered, State, Store
from ..store.db import TRANSIENT, database, retrying
from ..store.tables import tasks
from . import batches, control, pauses
from .checks import check_batch, check_reason, check_result, seconds, storable_reason
from .gather import Gather
from .plan import Outcome, Plan, apply_in_transaction, dispatches, lost_claim

__all__ = [
    "Task", "TaskOutcome", "Door", "Ended", "LongPoll",
    "claim_step", "claim_topic", "claim_tasks", "release", "lookup", "complete", "fail", "complete_many",
    "fail_many", "extend", "pause", "resume_clock",
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
        return task if task is not None else self.wait(due)

    def wait(self, due: datetime | None) -> float | None:
        """Nothing was claimed: seconds to wait for an offer before claiming again (until ``due`` at the most,
        when something becomes claimable without a message), or ``None`` once ``max_wait`` has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        if due is not None:
            remaining = min(remaining, max((due - utcnow()).total_seconds(), 0.0) + 0.01)
        return remaining


@dataclass(frozen=True)
class Ended:
    """What finishing a task did: the steps it offered (published already), or nothing, as a ``repeat``.

    ``repeat``: the holder sent again how it had finished the task (a worker whose answer
    was lost): the same ``worker_id`` with the same result (or reason) as the call that
    finished it. That is the first call's success, and nothing changes, whatever the
    instance did since; anyone else, or another result, gets :class:`TaskAlreadyFinished`.
    """

    offered: list[Dispatch] = field(default_factory=list)
    repeat: bool = False

    @property
    def retry(self) -> Dispatch | None:
        """A failure's retry, as published (``None``: not retried, or a repeat)."""
        return self.offered[0] if self.offered else None


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
        #: Single completions and failures of this process's threads, sharing transactions when they coincide.
        self._gather = Gather(self._apply_one, self._apply_many)

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

    def claim_items(self, instance_id: str, index: int, worker_id: str, first: int, items: int, *,
                    now: datetime | None = None) -> list[Task]:
        """Claim items ``first`` to ``first + items - 1`` of a mapped step at once, for a push worker that was sent
        them in one message (a ``chunk``), each leased as :meth:`claim_step` leases one; in item order. Those not
        pending (claimed, finished, cancelled already) are left out: none at all is a duplicate delivery."""
        found = self._claim_chunk(lambda store, at, until: store.claim_items(instance_id, index, first, items,
                                                                             worker_id, at, until), now)
        return sorted(found, key=lambda task: task.item_index or 0)

    def claim_branches(self, instance_id: str, indexes: list[int], worker_id: str, *,
                       now: datetime | None = None) -> list[Task]:
        """Claim the sibling steps ``indexes`` of an instance at once, for a push worker that was sent them in one
        message (their ``chunk``), as :meth:`claim_items` claims a chunk's items; in the order of ``indexes``."""
        found = self._claim_chunk(lambda store, at, until: store.claim_steps(instance_id, indexes, worker_id, at,
                                                                             until), now)
        return sorted(found, key=lambda task: indexes.index(task.step_index))

    def _claim_chunk(self, claim: Callable[[Store, datetime, datetime], list[Task]],
                     now: datetime | None) -> list[Task]:
        now = now or utcnow()
        until = now + timedelta(seconds=get_settings().worker_lease)
        store = database().store
        found = retrying(partial(claim, store, now, until), "claiming a chunk")
        for task in found:
            self._hold(task)
        return found

    def claim_topic(self, topic: str, worker_id: str, lease: timedelta, *,
                    now: datetime | None = None) -> tuple[Task | None, datetime | None]:
        """Claim the oldest due step on ``topic`` for a pull worker, leased until ``now + lease``.

        Returns the task, or ``None`` and when something next becomes claimable without
        a new message (a retry's backoff ends, a lease runs out). Lapsed leases on the
        topic are swept first, at most once a second.
        """
        now = now or utcnow()
        self._sweep_topic(topic, now)
        store = database().store
        task, due = retrying(lambda: store.claim_topic(topic, worker_id, now, now + lease), "claiming a task")
        self._hold(task)
        self._claimed(topic, task is not None, due)
        return task, due

    def claim_tasks(self, topic: str, worker_id: str, lease: timedelta, max_tasks: int, *,
                    now: datetime | None = None) -> tuple[list[Task], datetime | None]:
        """Claim up to ``max_tasks`` of the oldest due steps on ``topic`` in one statement, each leased until
        ``now + lease``; or none, and when something next becomes claimable (as :meth:`claim_topic`)."""
        check_batch(max_tasks, "max_tasks")
        now = now or utcnow()
        self._sweep_topic(topic, now)
        store = database().store
        found, due = retrying(lambda: store.claim_tasks(topic, worker_id, now, now + lease, max_tasks),
                              "claiming tasks")
        for task in found:
            self._hold(task)
        self._claimed(topic, bool(found), due)
        return found, due

    def _sweep_topic(self, topic: str, now: datetime) -> None:
        """Re-offer the topic's lapsed claims before claiming, at most once a second per process."""
        if time.monotonic() - self._swept.get(topic, 0.0) >= self.SWEEP_EVERY:
            self._swept[topic] = time.monotonic()
            publish_all(self.sweep(now=now, topic=topic))

    def _claimed(self, topic: str, found: bool, due: datetime | None) -> None:
        if not found and due is not None:
            self._swept.pop(topic, None)  # something is due then: sweep on the next call

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

    def _end(self, plan: Plan, what: str) -> Ended:
        """Apply an ended attempt's plan; return what it offered, as dispatches, or that it was its holder's repeat
        (or raise why it did not apply)."""
        offered = self._gather.end(plan, what)
        self._forget(plan.task.id)
        if offered is None:
            self._refuse(plan.task.id, plan.now, plan.outcome.holder, plan.outcome)
            return Ended(repeat=True)  # not refused: the holder repeated its own finish
        return Ended(dispatches(plan.task, offered))

    @staticmethod
    def _apply_one(plan: Plan, what: str) -> list[Offered] | None:
        """Apply one ended attempt's plan in its own transaction (one statement where the store can)."""
        db = database()
        move = plan.move()
        finished = retrying(partial(db.store.finish, move), what) if move is not None else None
        if finished is None or finished.in_transaction:
            return retrying(partial(apply_in_transaction, db, plan), what)
        return finished.offered if finished.applied else None

    @staticmethod
    def _apply_many(plans: list[Plan], what: str) -> list[list[Offered] | None]:
        return batches.apply_all(database(), plans, what)

    def complete(self, task: Task | str, result: dict[str, object] | None = None, *, worker_id: str | None = None,
                 now: datetime | None = None, chained: bool = False) -> Ended:
        """Mark a running task done, store ``result`` and move its instance on; return what was published.
        Its holder completing it again with the same result changes nothing: :attr:`Ended.repeat`.

        The steps it makes ready are queued in the same statement and published after
        it: a straight run's next step by the push worker's Celery chain when
        ``chained``, everything else (branches of a fan-out, a join, a map's items) here.
        Only the worker holding the claim may complete it.

        Raises:
            TaskNotFound, TaskAlreadyFinished, LeaseLost, TaskNotClaimed, NotLeaseHolder, InstanceFinished:
                the task cannot be completed as it stands (``TaskAlreadyFinished``: by someone else, or
                otherwise); nothing was changed.
            InvalidPayload: ``result`` is not a JSON object, or does not fit the step's ``form`` (``FormError``, every
                field named).
        """
        plan = self._done(task, result, worker_id, now or utcnow())
        ended = self._end(plan, "completing a task")
        if chained:
            carried = plan.graph.chained(plan.task.step_index)
            ended = Ended([d for d in ended.offered if d.from_step != carried], ended.repeat)
        publish_all(ended.offered)  # recorded already: one the broker refuses is left to the reconciler
        return ended

    def fail(self, task: Task | str, reason: str, *, worker_id: str | None = None,
             now: datetime | None = None, retry: bool = True) -> Ended:
        """Mark a running task failed with ``reason``: retried per its step's rules, or the instance fails (and its
        other open steps are cancelled). Returns the retry that was published, if any (:attr:`Ended.retry`); its
        holder failing it again with the same reason changes nothing (:attr:`Ended.repeat`).

        ``retry=False``: the instance fails whatever the step's ``retries`` (a tracked Celery task that gave up)."""
        ended = self._end(self._failed(task, reason, worker_id, now or utcnow(), retry), "failing a task")
        publish_all(ended.offered)  # recorded already: one the broker refuses is left to the reconciler
        return ended

    def _done(self, task: Task | str, result: dict[str, object] | None, worker_id: str | None,
              now: datetime) -> Plan:
        """The plan of a completion (raises if the result is refused: not a JSON object, or not its form's)."""
        held, holder = self._task(task, worker_id)
        stored = check_result(result)
        definition = catalog.definition(held.workflow_id, held.version)
        definition.steps[held.step_index].check_result(stored)  # a human step's form
        return Plan(definition, held, Outcome.done(stored, holder), now)

    def _failed(self, task: Task | str, reason: str, worker_id: str | None, now: datetime, retry: bool) -> Plan:
        """The plan of a failure (raises if the reason is refused)."""
        held, holder = self._task(task, worker_id)
        check_reason(reason)
        definition = catalog.definition(held.workflow_id, held.version)
        return Plan(definition, held, Outcome.failed(reason, holder=holder, retry=retry), now)

    # -- batches ----------------------------------------------------------------------------------------------------

    def complete_many(self, items: Sequence[tuple[str, dict[str, object] | None]], *, worker_id: str | None = None,
                      now: datetime | None = None) -> list[TaskOutcome]:
        """Complete many tasks in one transaction, as :meth:`complete` completes one: ``(task id, result)`` each;
        one outcome per item, in order. A task that cannot be completed is refused (with the error
        :meth:`complete` raises) and changes nothing; the others go through."""
        at = now or utcnow()
        return self._end_many([(task_id, partial(self._done, task_id, result, worker_id, at))
                               for task_id, result in items], "done", "completing tasks")

    def fail_many(self, items: Sequence[tuple[str, str]], *, worker_id: str | None = None,
                  now: datetime | None = None) -> list[TaskOutcome]:
        """Fail many tasks in one transaction, as :meth:`fail` fails one: ``(task id, reason)`` each; one outcome
        per item, in order (see :meth:`complete_many`)."""
        at = now or utcnow()
        return self._end_many([(task_id, partial(self._failed, task_id, reason, worker_id, at, True))
                               for task_id, reason in items], "failed", "failing tasks")

    def _end_many(self, planned: list[tuple[str, Callable[[], Plan]]], status: Literal["done", "failed"],
                  what: str) -> list[TaskOutcome]:
        """Plan each item (a refused argument refuses that item), apply the plans in one transaction, then say why
        each one that did not apply was refused, and publish what the others offered."""
        if planned:
            check_batch(len(planned), "a batch's number of tasks")
        outcomes: list[TaskOutcome] = []
        plans: dict[int, Plan] = {}
        for n, (task_id, make) in enumerate(planned):
            try:
                plans[n] = make()
                outcomes.append(TaskOutcome(task_id, status))
            except (ConfigurationError, BrokerUnavailable):
                raise  # not about this task: the whole call fails
            except OmsError as exc:
                outcomes.append(TaskOutcome.refused(task_id, exc))
        published: list[Dispatch] = []
        ended = self._apply_many(list(plans.values()), what)
        for (n, plan), offered in zip(plans.items(), ended, strict=True):
            if offered is None:
                try:
                    self._refuse(plan.task.id, plan.now, plan.outcome.holder, plan.outcome)
                    outcomes[n] = TaskOutcome(outcomes[n].task_id, status, repeat=True)
                except OmsError as exc:
                    outcomes[n] = TaskOutcome.refused(outcomes[n].task_id, exc)
                continue
            self._forget(plan.task.id)
            published += dispatches(plan.task, offered)
        publish_all(published)  # recorded already: one the broker refuses is left to the reconciler
        return outcomes

    def _refuse(self, task_id: str, now: datetime, holder: str | None = None, outcome: Outcome | None = None) -> None:
        """Raise the error that says why a transition on ``task_id`` did not apply; return only when ``outcome`` is
        how its holder finished the task already (a repeat, see :class:`Ended`)."""
        store = database().store
        state = retrying(lambda: store.state(task_id), "reading a task")
        if state is None:
            raise TaskNotFound(task_id)
        if outcome is not None and _repeats(outcome, state):
            return
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

        def lost() -> tuple[int, Place]:
            with db.reader.connect() as conn:
                row = conn.execute(select(tasks.c.lost, tasks.c.ready_at, tasks.c.light, tasks.c.rung)
                                   .where(tasks.c.id == task.id)).one()
                return int(row.lost or 0), Place(row.ready_at, row.light, row.rung)

        lost_so_far, kept = retrying(lost, "reading a task")
        outcome = Outcome.lapsed(lost_so_far, now, worker_id, kept)
        definition = catalog.definition(task.workflow_id, task.version)
        dispatches = self._end(Plan(definition, task, outcome, now), "releasing a claim").offered
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
        for task, lost_before, _worker, kept in retrying(partial(store.lapsed, now, topic, limit),
                                                          "finding lapsed leases"):
            try:
                definition = catalog.definition(task.workflow_id, task.version)
                outcome = (self._settled(definition, task, now)
                           or lost_claim(definition, task, lost_before + 1, now, kept=kept))
                if outcome.status is TaskStatus.CANCELLED:
                    control.cancel_workflow(task.instance_id, outcome.reason or "revoked")
                    continue
                dispatches += self._end(Plan(definition, task, outcome, now), "ending a lapsed claim").offered
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


def _repeats(outcome: Outcome, state: State) -> bool:
    """Whether ``outcome`` is how its holder finished the task already: the one rule of a repeated completion."""
    if outcome.holder is None or outcome.holder != state.worker_id or outcome.status is not state.task_status:
        return False
    if outcome.status is TaskStatus.DONE:
        return outcome.result == state.result
    return outcome.status is TaskStatus.FAILED and outcome.reason == state.error


def heartbeat_interval() -> float:
    """Seconds between a push worker's heartbeats (``OMS_HEARTBEAT_INTERVAL``)."""
    return get_settings().heartbeat_interval


#: This process's door; a forked child's starts afresh.
_door = Door()
os.register_at_fork(after_in_child=_door.reset)

claim_step = _door.claim_step
claim_items = _door.claim_items
claim_branches = _door.claim_branches
claim_topic = _door.claim_topic
claim_tasks = _door.claim_tasks
complete_many = _door.complete_many
fail_many = _door.fail_many
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
