"""What an ended attempt makes happen next: the steps it makes ready, joins, maps, retries, the instance's end.

One module decides it, for every store. A :class:`Plan` is an attempt's outcome
read against its workflow's graph:

* most outcomes need nothing the database holds beyond the instance's counters, so
  :meth:`Plan.statement` turns them into a :class:`~oms.store.Finish`, which
  PostgreSQL applies in one statement (a join's counter is decremented under the
  instance's row lock, and the step inserted only where it reaches zero);
* the rest (a mapped step's item completing, or a step completing that may make a
  mapped step ready, whose list must be read) run through :func:`apply`, a few
  Core statements in one transaction that hold the instance's lock throughout; it
  is also SQLite's path for everything.

The counters live on the instance row (``waiting``: a join's predecessors not done,
a running mapped step's items not done; ``steps_left``): every transition of an
instance locks that row first, so of two branches finishing at the same moment on
two workers, exactly one sees a join's counter reach zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, cast

from sqlalchemy import Connection, Table, case, select, update

from ..exceptions import InvalidPayload, TooManyItems
from ..model.definitions import Workflow
from ..settings import get_settings
from ..states import (
    LEASE_EXPIRED,
    STEP_MAPPED,
    InstanceStatus,
    TaskStatus,
    ended_with_instance,
    instance_event,
    task_event,
)
from ..store import Finish
from ..store.tables import EventRow, InstanceRow, TaskRow
from .rows import event, queued_event, step_event, task_event_row, task_row
from .task import Task

tasks = cast(Table, TaskRow.__table__)
instances = cast(Table, InstanceRow.__table__)
events = cast(Table, EventRow.__table__)

DONE = task_event(TaskStatus.RUNNING, TaskStatus.DONE)
FAILED = task_event(TaskStatus.RUNNING, TaskStatus.FAILED, "task.failed")
LAPSED = task_event(TaskStatus.RUNNING, TaskStatus.FAILED, "task.lease_expired")
CANCELLED = task_event(TaskStatus.RUNNING, TaskStatus.FAILED, "task.cancelled")
WORKFLOW_DONE = instance_event(InstanceStatus.RUNNING, InstanceStatus.DONE)
WORKFLOW_FAILED = instance_event(InstanceStatus.RUNNING, InstanceStatus.FAILED)
OPEN = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: done (with a result), failed (with a reason), or its claim lapsed."""

    #: The task's event: ``task.done``, ``task.failed`` or ``task.lease_expired``.
    kind: str
    result: dict[str, Any] | None = None
    #: Why it failed (stored in the task's ``error``).
    reason: str | None = None
    #: Whether the step's ``retries`` may apply to this failure.
    retry: bool = True
    #: Claims lost so far (a lease sweep), counted against ``max_deliveries``.
    lost: int | None = None
    #: Apply only if the task's lease ran out before this moment (a lease sweep).
    lapsed_before: datetime | None = None
    #: Apply only if this worker holds the claim (``None``: whoever holds it).
    holder: str | None = None

    @classmethod
    def done(cls, result: dict[str, Any] | None, holder: str | None = None) -> Outcome:
        return cls(DONE, result=result, holder=holder)

    @classmethod
    def failed(cls, reason: str, *, retry: bool = True, lost: int | None = None,
               lapsed_before: datetime | None = None, holder: str | None = None) -> Outcome:
        return cls(FAILED, reason=reason, retry=retry, lost=lost, lapsed_before=lapsed_before, holder=holder)

    @classmethod
    def lapsed(cls, lost: int, before: datetime) -> Outcome:
        """A claim whose lease ran out: the step is offered again, not counted against ``retries``."""
        return cls(LAPSED, reason=LEASE_EXPIRED, lost=lost, lapsed_before=before)


@dataclass(frozen=True)
class Offered:
    """A task a transition queued: what to publish once it has committed."""

    step_index: int
    item_index: int | None = None
    countdown: float = 0.0


class MapError(Exception):
    """A mapped step's list cannot be read, or has too many items: the instance fails (or does not start)."""

    def __init__(self, step_id: str, reason: str, cause: InvalidPayload | None = None) -> None:
        self.step_id, self.reason, self.cause = step_id, reason, cause
        super().__init__(f"step {step_id!r} cannot start: {reason}")


def map_items(definition: Workflow, index: int, payload: dict[str, Any], results: dict[str, Any]) -> list[Any]:
    """The items of mapped step ``index``, or :class:`MapError` (not a list; over ``OMS_MAX_MAP_ITEMS``)."""
    path = definition.graph.maps[index]
    assert path is not None
    step_id = definition.steps[index].id
    try:
        items = path.resolve(payload, results)
    except ValueError as exc:
        raise MapError(step_id, str(exc)) from None
    limit = get_settings().max_map_items
    if len(items) > limit:
        too_many = TooManyItems(path.text, len(items), limit)
        raise MapError(step_id, str(too_many), too_many)
    return items


@dataclass
class Progress:
    """An instance's counters and results as one transaction moves them, and the rows it adds."""

    definition: Workflow
    instance_id: str
    payload: dict[str, Any]
    now: datetime
    results: dict[str, Any]
    waiting: dict[str, int]
    steps_left: int
    current_step: int
    offered: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def offer(self, index: int) -> None:
        """Make step ``index`` ready: one task, or one per item of a mapped step (none: done at once)."""
        graph = self.definition.graph
        self.current_step = max(self.current_step, index)
        if graph.maps[index] is None:
            self._queue(task_row(self.instance_id, self.payload, self.definition, index, self.now))
            return
        items = map_items(self.definition, index, self.payload, self.results)
        step_id = self.definition.steps[index].id
        self.events.append(step_event(STEP_MAPPED, self.instance_id, self.now, step_id, items=len(items)))
        if not items:
            self.results[step_id] = []
            self.step_done(index)
            return
        self.waiting[str(index)] = len(items)
        for position, item in enumerate(items):
            self._queue(task_row(self.instance_id, self.payload, self.definition, index, self.now,
                                 item_index=position, item=item))

    def _queue(self, row: dict[str, Any]) -> None:
        self.offered.append(row)
        self.events.append(queued_event(row, self.now))

    def step_done(self, index: int) -> None:
        """Step ``index`` is done: its successors whose predecessors are all done now become ready."""
        graph = self.definition.graph
        self.steps_left -= 1
        for following in graph.successors[index]:
            if graph.is_join(following):
                key = str(following)
                self.waiting[key] -= 1
                if self.waiting[key] > 0:
                    continue
            self.offer(following)


def start_progress(definition: Workflow, instance: dict[str, Any], now: datetime) -> Progress:
    """A new instance's first steps (its roots; mapped ones expanded from the payload), as rows.

    Raises :class:`MapError` when a mapped step's list cannot be read from the payload.
    """
    progress = Progress(definition, instance["id"], instance["payload"], now, {}, dict(instance["waiting"]),
                        instance["steps_left"], 0)
    for root in definition.graph.roots:
        progress.offer(root)
    return progress


class Plan:
    """An attempt's outcome read against its workflow: what the transition writes and offers."""

    def __init__(self, definition: Workflow, task: Task, outcome: Outcome, now: datetime) -> None:
        self.definition, self.task, self.outcome, self.now = definition, task, outcome, now
        self.graph = definition.graph
        self.step = definition.steps[task.step_index]

    @cached_property
    def failures(self) -> int:
        """Failed attempts at the step, this one included (a lapsed claim is not a failure)."""
        return self.task.failures + (self.outcome.kind == FAILED)

    @cached_property
    def retried(self) -> dict[str, Any] | None:
        """The step's next attempt (the same item of a mapped step), if this outcome offers one."""
        task, outcome = self.task, self.outcome
        if outcome.kind == LAPSED:
            delay, failures = None, task.failures
        elif outcome.kind == FAILED and outcome.retry and self.failures <= self.step.retries:
            delay, failures = self.step.retry_delay(self.failures), self.failures
        else:
            return None
        counts: dict[str, Any] = {"attempt": task.attempt + 1, "failures": failures,
                                  "lost": outcome.lost if outcome.kind == LAPSED else 0}
        if delay is not None:
            counts["delay"] = delay
        return task_row(task.instance_id, None, self.definition, task.step_index, self.now,
                        item_index=task.item_index, item=task.item, **counts)

    @property
    def ends_instance(self) -> bool:
        """A failure with no retry left: the instance fails and its other open steps are cancelled."""
        return self.outcome.kind != DONE and self.retried is None

    def _ended_event(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.outcome.kind == FAILED:
            data = {"reason": self.outcome.reason, "lost": self.outcome.lost or None}
        elif self.outcome.kind == LAPSED:
            data = {"worker_id": self.task.worker_id, "lost": self.outcome.lost}
        return task_event_row(self.outcome.kind, self.task, self.now, **data)

    @property
    def instance_error(self) -> str:
        return f"step {self.task.step_id!r} failed after {self.failures} attempt(s): {self.outcome.reason}"

    def _failed_event(self) -> dict[str, Any]:
        return event(WORKFLOW_FAILED, self.task.instance_id, self.now, step_id=self.task.step_id,
                     reason=self.outcome.reason)

    @property
    def cancel_error(self) -> str:
        return ended_with_instance(InstanceStatus.FAILED.value, f"step {self.task.step_id!r} failed")

    def statement(self) -> Finish | None:
        """The transition as one statement's rows; ``None`` if it needs :func:`apply` (a mapped step may be
        made ready, whose list must be read). A mapped step's item that turns out to be its last does not
        apply as a statement either (``unless_last``): :func:`apply` then gathers the items' results."""
        task, now = self.task, self.now
        common: dict[str, Any] = {"task_id": task.id, "instance_id": task.instance_id, "now": now,
                                  "lapsed_before": self.outcome.lapsed_before, "holder": self.outcome.holder}
        ended = self._ended_event()
        if self.outcome.kind == DONE and task.item_index is not None:
            return Finish(status=TaskStatus.DONE, result=self.outcome.result, joins=[task.step_index],
                          unless_last=task.step_index, events=[ended], **common)
        if self.outcome.kind == DONE:
            following = self.graph.successors[task.step_index]
            if any(self.graph.maps[s] for s in following):
                return None
            offered = [task_row(task.instance_id, None, self.definition, s, now) for s in following]
            return Finish(
                status=TaskStatus.DONE, result=self.outcome.result, step_id=task.step_id, steps_done=1,
                joins=[s for s in following if self.graph.is_join(s)],
                current_step=max(following, default=None), new_tasks=offered,
                events=[ended, *(queued_event(row, now) for row in offered),
                        event(WORKFLOW_DONE, task.instance_id, now)],
                **common,
            )
        if self.retried is not None:
            return Finish(status=TaskStatus.FAILED, error=self.outcome.reason, lost=None,
                          new_tasks=[self.retried], events=[ended, queued_event(self.retried, now)], **common)
        return Finish(status=TaskStatus.FAILED, error=self.outcome.reason,
                      instance_status=InstanceStatus.FAILED.value, instance_error=self.instance_error,
                      cancel_error=self.cancel_error, cancel_reason=self.cancel_reason,
                      events=[ended, self._failed_event()], **common)

    @property
    def cancel_reason(self) -> str:
        return f"step {self.task.step_id!r} failed"

    def offers(self, rows: list[dict[str, Any]]) -> list[Offered]:
        """What to publish for the task rows a transition inserted."""
        countdown = 0.0
        if self.retried is not None:
            countdown = (self.retried["ready_at"] - self.now).total_seconds()
        return [Offered(row["step_index"], row["item_index"], countdown) for row in rows]


def _gather(conn: Connection, task: Task) -> list[Any]:
    """A mapped step's results in item order: what later steps see (``None`` for items without one)."""
    found = conn.execute(
        select(tasks.c.item_index, tasks.c.result).where(
            tasks.c.instance_id == task.instance_id, tasks.c.step_index == task.step_index,
            tasks.c.status == TaskStatus.DONE.value)
    ).all()
    by_index = {row.item_index: row.result for row in found}
    return [by_index.get(position) for position in range(len(by_index))]


def _freeze(column: Any, now: datetime) -> Any:
    """A row finished before its next SLA check keeps its light; one finished later stays due."""
    return case((column > now, None), else_=column)


def apply(conn: Connection, plan: Plan) -> list[Offered] | None:
    """Apply ``plan`` in the caller's transaction, any dialect; ``None`` if the task was not running.

    Locks the instance, then the task; reads the counters and results under that
    lock, so what it decides (a join firing, a map's last item) is decided once.
    """
    task, outcome, now = plan.task, plan.outcome, plan.now
    instance = conn.execute(
        select(instances.c.results, instances.c.payload, instances.c.waiting, instances.c.steps_left,
               instances.c.current_step).where(instances.c.id == task.instance_id).with_for_update()
    ).first()
    row = conn.execute(
        select(tasks.c.status, tasks.c.lease_expires_at, tasks.c.worker_id).where(tasks.c.id == task.id)
        .with_for_update()
    ).first()
    if instance is None or row is None or row.status != TaskStatus.RUNNING.value:
        return None
    if outcome.holder is not None and row.worker_id is not None and row.worker_id != outcome.holder:
        return None  # a parked step (its clock paused) has no holder: anyone may finish it
    lapsed = row.lease_expires_at is not None and row.lease_expires_at < (outcome.lapsed_before or now)
    if lapsed != (outcome.lapsed_before is not None):  # a sweep ends lapsed claims only; others, live ones
        return None
    conn.execute(update(tasks).where(tasks.c.id == task.id).values(
        status=(TaskStatus.DONE if outcome.kind == DONE else TaskStatus.FAILED).value, finished_at=now,
        result=outcome.result, error=outcome.reason, sla_check_at=_freeze(tasks.c.sla_check_at, now)))
    progress = Progress(plan.definition, task.instance_id, instance.payload, now, dict(instance.results),
                        dict(instance.waiting), instance.steps_left, instance.current_step)
    progress.events.append(plan._ended_event())
    changes: dict[str, Any] = {}
    failure: tuple[str, str, str, str] | None = None  # (instance error, event reason, step, cancel reason)
    if outcome.kind == DONE:
        key = str(task.step_index)
        try:
            if task.item_index is None:
                if outcome.result is not None:
                    progress.results[task.step_id] = outcome.result
                progress.step_done(task.step_index)
            else:
                progress.waiting[key] -= 1
                if progress.waiting[key] == 0:
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
    if failure is not None:
        error, reason, step_id, cancel_reason = failure
        cancelled = conn.execute(
            update(tasks).where(tasks.c.instance_id == task.instance_id, tasks.c.id != task.id,
                                tasks.c.status.in_(OPEN))
            .values(status=TaskStatus.FAILED.value, finished_at=now,
                    error=ended_with_instance(InstanceStatus.FAILED.value, cancel_reason),
                    sla_check_at=_freeze(tasks.c.sla_check_at, now))
            .returning(tasks.c.id, tasks.c.instance_id, tasks.c.step_id, tasks.c.attempt, tasks.c.item_index)
        ).all()
        progress.events.extend(task_event_row(CANCELLED, dict(c._mapping), now, reason=cancel_reason)
                               for c in sorted(cancelled, key=lambda c: (c.step_id, c.item_index or 0)))
        progress.events.append(event(WORKFLOW_FAILED, task.instance_id, now, step_id=step_id, reason=reason))
        changes.update(status=InstanceStatus.FAILED.value, error=error, finished_at=now,
                       sla_check_at=_freeze(instances.c.sla_check_at, now))
    elif progress.steps_left <= 0:
        progress.events.append(event(WORKFLOW_DONE, task.instance_id, now))
        changes.update(status=InstanceStatus.DONE.value, finished_at=now,
                       sla_check_at=_freeze(instances.c.sla_check_at, now))
    conn.execute(update(instances).where(instances.c.id == task.instance_id).values(
        results=progress.results, waiting=progress.waiting, steps_left=progress.steps_left,
        current_step=progress.current_step, updated_at=now, **changes))
    if progress.offered:
        conn.execute(tasks.insert(), [{**r, "payload": instance.payload} for r in progress.offered])
    conn.execute(events.insert(), progress.events)
    return plan.offers(progress.offered)
