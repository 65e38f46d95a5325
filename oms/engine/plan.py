"""What an ended attempt makes happen next: the steps it makes ready, joins, maps, retries, the instance's end.

One module decides it, for every store. A :class:`Plan` is an attempt's
:class:`Outcome` read against its workflow's graph:

* most plans need nothing the database holds beyond the instance's counters, so
  :meth:`Plan.move` states them as a typed :class:`~oms.store.contract.Move`, which
  PostgreSQL applies in one statement (a join's counter counted down under the
  instance's row lock, the step inserted only where it reaches zero);
* the rest (a mapped step's last item, a step whose successor is a mapped step,
  whose list must be read), every plan on SQLite, and the breach policies run
  through :func:`apply`: the same builders (:mod:`oms.store.moves`) in one
  transaction that holds the instance's lock throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import ColumnElement, Connection, select, true, update

from ..celery.dispatch import Dispatch
from ..model.definitions import Definition
from ..model.task import Place, Task
from ..states import OPEN_TASK, WORKER_LOST, InstanceStatus, TaskStatus, instance_event, task_event
from ..store import moves, signals
from ..store.contract import Advance, CountItem, Ending, EndInstance, Move, Offered, Retry
from ..store.db import Database
from ..store.events import event, task_event_row
from ..store.tables import events, instances, tasks
from .progress import MapError, Progress
from .rows import queued_event, task_row

WORKFLOW_DONE = instance_event(InstanceStatus.RUNNING, InstanceStatus.DONE)
WORKFLOW_FAILED = instance_event(InstanceStatus.RUNNING, InstanceStatus.FAILED)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``done`` (with a result), ``failed`` (with a reason), or ``lapsed`` (its claim ran out)."""

    status: TaskStatus
    result: dict[str, Any] | None = None
    #: Why it failed or lapsed (stored in the task's ``error``).
    reason: str | None = None
    #: Whether the step's ``retries`` may apply to this failure.
    retry: bool = True
    #: Claims lost so far (a lease sweep), counted against ``max_deliveries``.
    lost: int | None = None
    #: Apply only if the task's lease ran out before this moment (a lease sweep).
    lapsed_before: datetime | None = None
    #: Apply only if this worker holds the claim (``None``: whoever holds it).
    holder: str | None = None
    #: Ended whoever holds it, queued or running (lapsed or not): a breach policy, a signal, a timer.
    whoever: bool = False
    #: What the attempt's ending event says besides (``signal``: the signal that ended a waiting step).
    note: dict[str, Any] | None = None
    #: A lapsed claim: what its re-offer keeps of the attempt (its place in the queue, its clock).
    kept: Place | None = None

    @classmethod
    def done(cls, result: dict[str, Any] | None, holder: str | None = None) -> Outcome:
        return cls(TaskStatus.DONE, result=result, holder=holder)

    @classmethod
    def failed(cls, reason: str, *, retry: bool = True, lost: int | None = None,
               lapsed_before: datetime | None = None, holder: str | None = None) -> Outcome:
        return cls(TaskStatus.FAILED, reason=reason, retry=retry, lost=lost, lapsed_before=lapsed_before,
                   holder=holder)

    @classmethod
    def lapsed(cls, lost: int, before: datetime, holder: str | None = None, kept: Place | None = None) -> Outcome:
        """A claim whose lease ran out before ``before``: the step is offered again, not counted against
        ``retries`` but against ``max_deliveries`` (past it, the attempt fails with ``worker_lost``); ``kept``:
        the place and the clock its re-offer keeps."""
        return cls(TaskStatus.LAPSED, reason="lease expired", lost=lost, lapsed_before=before, holder=holder,
                   kept=kept)

    @classmethod
    def breached(cls, reason: str, *, retry: bool) -> Outcome:
        """A breach policy (``on_breach: fail | retry``) ends the attempt, queued or running."""
        return cls(TaskStatus.FAILED, reason=reason, retry=retry, whoever=True)

    @classmethod
    def arrived(cls, result: dict[str, Any] | None, **note: Any) -> Outcome:
        """What a queued step waited for came: its signal (whose data is the result), or its timer's end."""
        return cls(TaskStatus.DONE, result=result, whoever=True, note=note)


def lost_claim(definition: Definition, task: Task, lost: int, now: datetime, holder: str | None = None,
               kept: Place | None = None) -> Outcome:
    """The outcome of a claim that lapsed (its ``lost``-th): offered again in its place (``kept``), or failed
    once ``max_deliveries`` claims were lost to dying workers."""
    if lost >= definition.steps[task.step_index].max_deliveries:
        return Outcome.failed(WORKER_LOST, lost=lost, lapsed_before=now, holder=holder)
    return Outcome.lapsed(lost, now, holder, kept)


class Plan:
    """An attempt's outcome read against its workflow: what the transition writes and offers."""

    def __init__(self, definition: Definition, task: Task, outcome: Outcome, now: datetime) -> None:
        self.definition, self.task, self.outcome, self.now = definition, task, outcome, now
        self.graph = definition.graph
        self.step = definition.steps[task.step_index]

    @cached_property
    def failures(self) -> int:
        """Failed attempts at the step, this one included (a lapsed claim is not a failure)."""
        return self.task.failures + (self.outcome.status is TaskStatus.FAILED)

    @cached_property
    def retried(self) -> dict[str, Any] | None:
        """The step's next attempt (the same item of a mapped step), if this outcome offers one."""
        task, outcome = self.task, self.outcome
        if outcome.status is TaskStatus.LAPSED:
            counts: dict[str, Any] = {"failures": task.failures, "lost": outcome.lost, "kept": outcome.kept}
            if self.definition.tracked or outcome.kept is not None:
                # its worker went away (or Celery may still deliver the message it holds): its clock keeps running
                counts["deadline"] = task.expires_at
        elif outcome.status is TaskStatus.FAILED and outcome.retry and self.failures <= self.step.retries:
            counts = {"failures": self.failures, "delay": self.step.retry_delay(self.failures)}
        else:
            return None
        return task_row(task.instance_id, None, self.definition, task.step_index, self.now, attempt=task.attempt + 1,
                        item_index=task.item_index, item=task.item, **counts)

    def ending(self) -> Ending:
        """The attempt's own row, as it ends."""
        task, outcome = self.task, self.outcome
        return Ending(task.id, task.instance_id, self.now, outcome.status, result=outcome.result,
                      error=outcome.reason, lost=outcome.lost, holder=outcome.holder,
                      lapsed_before=outcome.lapsed_before)

    def _ended_event(self) -> dict[str, Any]:
        outcome, kind = self.outcome, task_event(TaskStatus.RUNNING, self.outcome.status)
        if outcome.note:
            return task_event_row(kind, self.task, self.now, **outcome.note)
        if outcome.status is TaskStatus.FAILED:
            return task_event_row(kind, self.task, self.now, reason=outcome.reason, lost=outcome.lost or None)
        if outcome.status is TaskStatus.LAPSED:
            return task_event_row(kind, self.task, self.now, worker_id=self.task.worker_id, lost=outcome.lost)
        return task_event_row(kind, self.task, self.now)

    @property
    def instance_error(self) -> str:
        return f"step {self.task.step_id!r} failed after {self.failures} attempt(s): {self.outcome.reason}"

    @property
    def cancel_reason(self) -> str:
        """Why the instance's other open steps are cancelled when this failure ends it."""
        return f"step {self.task.step_id!r} failed"

    def move(self) -> Move | None:
        """The transition as one statement's move; ``None`` if it needs :func:`apply` (a mapped step may be made
        ready, whose list must be read; a waiting step, whose signal may be kept already; or the attempt may still
        be queued)."""
        task, now, ended = self.task, self.now, self._ended_event()
        if self.outcome.whoever:
            return None
        if self.outcome.status is TaskStatus.DONE and task.item_index is not None:
            return Move(self.ending(), CountItem(task.step_index), [ended])
        if self.outcome.status is TaskStatus.DONE:
            following = self.graph.successors[task.step_index]
            if any(self.graph.maps[s] or self.definition.steps[s].wait_for for s in following):
                return None
            offered = [task_row(task.instance_id, None, self.definition, s, now) for s in following]
            return Move(self.ending(), Advance(task.step_id, [s for s in following if self.graph.is_join(s)],
                                               max(following, default=None), offered),
                        [ended, *(queued_event(row, now) for row in offered), event(WORKFLOW_DONE, task.instance_id,
                                                                                     now)])
        if self.retried is not None:
            return Move(self.ending(), Retry(self.retried), [ended, queued_event(self.retried, now)])
        return Move(self.ending(), EndInstance(self.instance_error, self.cancel_reason),
                    [ended, event(WORKFLOW_FAILED, task.instance_id, now, step_id=task.step_id,
                                  reason=self.outcome.reason)])

    def offers(self, rows: list[dict[str, Any]]) -> list[Offered]:
        """What to publish for the task rows a transition inserted."""
        countdown = 0.0
        if self.retried is not None:
            countdown = (self.retried["dispatched_at"] - self.now).total_seconds()  # a lapse's re-offer: 0
        return [Offered(row["step_index"], row["item_index"], countdown) for row in rows]


def _gather(conn: Connection, task: Task) -> list[Any]:
    """A mapped step's results in item order: what later steps see (``None`` for items without one)."""
    found = conn.execute(
        select(tasks.c.item_index, tasks.c.result).where(
            tasks.c.instance_id == task.instance_id, tasks.c.step_index == task.step_index,
            tasks.c.status == TaskStatus.DONE)
    ).all()
    by_index = {row.item_index: row.result for row in found}
    return [by_index.get(position) for position in range(len(by_index))]


def apply(conn: Connection, plan: Plan) -> list[Offered] | None:
    """Apply ``plan`` in the caller's transaction, any dialect; ``None`` if its attempt could not end (no longer
    open, or its claim not the outcome's).

    Locks the instance, then the task; reads the counters and results under that
    lock, so what it decides (a join firing, a map's last item) is decided once.
    """
    task, outcome, now = plan.task, plan.outcome, plan.now
    instance = conn.execute(
        select(instances.c.id, instances.c.results, instances.c.payload, instances.c.waiting, instances.c.steps_left,
               instances.c.current_step).where(instances.c.id == task.instance_id).with_for_update()
    ).first()
    claim: ColumnElement[bool]
    open_as: tuple[TaskStatus, ...]
    if outcome.whoever:
        claim, open_as = true(), OPEN_TASK
    else:
        claim, open_as = moves.claim_ends(now, outcome.holder, outcome.lapsed_before), (TaskStatus.RUNNING,)
    if instance is None or conn.execute(moves.end_attempt(
            task.id, outcome.status, now, result=outcome.result, error=outcome.reason, lost=outcome.lost,
            claim=claim, open_as=open_as)).first() is None:
        return None
    progress = Progress.of(plan.definition, instance, now)
    progress.events.append(plan._ended_event())
    failure: tuple[str, str, str, str] | None = None  # (instance error, event reason, step, cancel reason)
    if outcome.status is TaskStatus.DONE:
        try:
            if task.item_index is None:
                if outcome.result is not None:
                    progress.results[task.step_id] = outcome.result
                progress.step_done(task.step_index)
            elif progress.item_done(task.step_index):
                progress.results[task.step_id] = _gather(conn, task)
                progress.step_done(task.step_index)
        except MapError as exc:
            progress.offered.clear()
            progress.events[1:] = []
            failure = (str(exc), exc.reason, exc.step_id, f"step {exc.step_id!r} cannot start")
    elif plan.retried is not None:
        progress.offered.append({**plan.retried, "payload": instance.payload})
        progress.events.append(queued_event(plan.retried, now))
    else:
        failure = (plan.instance_error, outcome.reason or "", task.step_id, plan.cancel_reason)
    changes: dict[str, Any] = {}
    if failure is not None:
        error, reason, step_id, cancel_reason = failure
        conn.execute(events.insert(), progress.events)
        progress.events = []
        cancel_open_tasks(conn, task.instance_id, now, cancel_reason, but=task.id)
        progress.events.append(event(WORKFLOW_FAILED, task.instance_id, now, step_id=step_id, reason=reason))
        changes = moves.end_instance(InstanceStatus.FAILED, now, error=error)
    elif progress.steps_left <= 0:
        progress.events.append(event(WORKFLOW_DONE, task.instance_id, now))
        changes = moves.end_instance(InstanceStatus.DONE, now)
    conn.execute(update(instances).where(instances.c.id == task.instance_id).values(
        results=progress.results, waiting=progress.waiting, steps_left=progress.steps_left,
        current_step=progress.current_step, updated_at=now, **changes))
    if progress.offered:
        conn.execute(tasks.insert(), [{**r, "payload": instance.payload} for r in progress.offered])
    if progress.events:
        conn.execute(events.insert(), progress.events)
    return plan.offers(progress.offered) + take_kept(conn, plan.definition, progress.offered, instance.payload,
                                                     task.version, now)


def take_kept(conn: Connection, definition: Definition, offered: list[dict[str, Any]], payload: dict[str, Any],
              version: int, now: datetime) -> list[Offered]:
    """The waiting steps among the rows just ``offered`` take the signals kept for them, in the caller's
    transaction; return what that offered in turn."""
    more: list[Offered] = []
    for row in offered:
        name = definition.steps[row["step_index"]].wait_for
        if name is not None and (kept := signals.kept(conn, row["instance_id"], name)) is not None:
            more += take_signal(conn, definition, _task_of(row, payload, version), kept, now)
    return more


def dispatches(task: Task, offered: list[Offered]) -> list[Dispatch]:
    """What to publish, once committed, for the steps a transition on ``task`` offered."""
    return [Dispatch(task.instance_id, task.workflow_id, task.version, o.step_index, o.countdown, o.item_index)
            for o in offered]


def _task_of(row: dict[str, Any], payload: dict[str, Any], version: int) -> Task:
    """The task a row just inserted stands for."""
    return Task(row["id"], row["instance_id"], row["workflow_id"], row["step_id"], row["topic"], row["attempt"],
                payload, version=version, step_index=row["step_index"], failures=row["failures"])


def end_waiting(conn: Connection, definition: Definition, task: Task, signal: signals.Signal,
                now: datetime) -> list[Offered] | None:
    """End the queued waiting step ``task`` with ``signal``'s data; return what that offered (``None`` if the step
    was no longer queued). The caller marks the signal taken."""
    return apply(conn, Plan(definition, task, Outcome.arrived(signal.data, signal=signal.name,
                                                              signal_id=signal.id), now))


def take_signal(conn: Connection, definition: Definition, task: Task, signal: signals.Signal,
                now: datetime) -> list[Offered]:
    """End the queued waiting step ``task`` with the kept ``signal``, and mark the signal taken by it; return what
    that offered (``[]`` if the step was no longer queued: the signal stays kept)."""
    offered = end_waiting(conn, definition, task, signal, now)
    if offered is None:
        return []
    signals.consume(conn, signal.id, task.id, now)
    return offered


def cancel_open_tasks(conn: Connection, instance_id: str, now: datetime, reason: str, *, but: str | None = None) -> int:
    """Cancel the instance's open tasks (all but ``but``), each with its ``task.cancelled`` event, in step order."""
    ended = conn.execute(moves.cancel_open_tasks(instance_id, now, reason, but=but)).all()
    if ended:
        just = select(tasks).where(tasks.c.id.in_([row.id for row in ended])).subquery()
        conn.execute(moves.log(moves.task_events(moves.CANCELLED, just, now, reason=reason)
                               .order_by(just.c.step_id, just.c.item_index)))
    return len(ended)


def apply_in_transaction(db: Database, plan: Plan) -> list[Offered] | None:
    """:func:`apply` in a transaction of its own."""
    with db.engine.begin() as conn:
        return apply(conn, plan)

