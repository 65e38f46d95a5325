"""Reading instances and their event log: the read side of the public API (SLA figures: :mod:`.summaries`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, computed_field, field_validator
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from ..engine.checks import check_key
from ..exceptions import InvalidArgument, UnknownInstance, check_id
from ..model.deadlines import paused_time, shown
from ..model.definitions import SYSTEM_PREFIX, Definition, check_workflow_id
from ..model.worktime import format_sla
from ..states import LIGHTS, InstanceStatus, StepKind, TaskStatus, worst
from ..store import signals
from ..store.catalog import load_definition, schedule
from ..store.db import transaction
from ..store.lights import seen_light, seen_rank
from ..store.tables import EventRow, InstanceRow, TaskRow
from .kinds import kind_fields


class Clock(BaseModel):
    """A step's SLA clock: seconds used, paused and left (negative: overdue), on its calendar if it has one."""

    used_s: float
    paused_s: float
    #: ``None``: the step has no SLA of its own (a tracked Celery task without ``sla``).
    left_s: float | None
    paused: bool
    calendar: str | None


class TaskInfo(BaseModel):
    """One attempt at one step, as stored."""

    id: str
    instance_id: str
    workflow_id: str
    step_id: str
    step_index: int
    topic: str
    attempt: int
    status: str
    worker_id: str | None
    error: str | None
    result: dict[str, Any] | None
    light: str
    ready_at: datetime
    #: ``None``: the step has no SLA of its own (a tracked Celery task without ``sla``); its instance's holds.
    warn_at: datetime | None
    expires_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    #: A mapped step's item: its position in the list, and its value.
    item_index: int | None = None
    item: Any = None
    #: The calendar its SLA counts in (``None``: wall time).
    calendar_id: str | None = None
    #: Since when its clock is paused, and why (``None`` while it runs); the time paused before, in seconds.
    paused_at: datetime | None = None
    pause_reason: str | None = None
    paused_s: float | None = None
    #: ``predicted``: yellow because the topic's pace will make it late; ``cleared``: a prediction taken back.
    light_reason: str | None = None
    predicted_finish: datetime | None = None
    #: A human step's candidates, ``{"users": [...], "groups": [...]}`` (as reassigned); ``worker_id`` holds it.
    assign: dict[str, list[str]] | None = None
    #: A timer: when it ends (its clock's ``warn_at`` and ``expires_at`` are a minute and five after it).
    wake_at: datetime | None = None
    #: Rungs of its step's escalation ladder this attempt has fired (``None``: none).
    rung: int | None = None

    @field_validator("warn_at", "expires_at")
    @classmethod
    def _no_deadline(cls, value: datetime | None) -> datetime | None:
        return shown(value)

    def light_now(self, now: datetime) -> str:
        """The light as every view shows it: the worse of the recorded one and the clock's (see :mod:`oms.lights`);
        a paused clock is read when it paused."""
        return seen_light(self.light, self.warn_at, self.expires_at, self.paused_at or self.finished_at, now)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sla_clock(self) -> Clock:
        """The step's SLA clock now (what ``oms status --json`` and the HTTP API show)."""
        return self.clock(datetime.now(UTC))

    def clock(self, now: datetime) -> Clock:
        """Time used, paused and left on the step's SLA clock, in its calendar's working time if it has one."""
        hours = schedule(self.calendar_id)
        moment = self.paused_at or self.finished_at or now
        # a step finished while parked keeps ``paused_at``: that last pause counts up to when it finished
        pausing = paused_time(hours, self.paused_at, self.finished_at or now) if self.paused_at else None
        paused = (self.paused_s or 0.0) + (pausing.total_seconds() if pausing else 0.0)
        span = paused_time(hours, self.ready_at, moment).total_seconds()
        due = self.expires_at
        left = (None if due is None else paused_time(hours, moment, due).total_seconds() if moment < due
                else -paused_time(hours, due, moment).total_seconds())
        return Clock(used_s=max(span - (self.paused_s or 0.0), 0.0), paused_s=paused, left_s=left,
                     paused=self.paused_at is not None and self.finished_at is None, calendar=self.calendar_id)


    @property
    def queue_wait_s(self) -> float | None:
        """Seconds from ready (queued) to started (claimed)."""
        return seconds(self.ready_at, self.started_at)

    @property
    def run_s(self) -> float | None:
        """Seconds from started to finished."""
        return seconds(self.started_at, self.finished_at)

    @property
    def total_s(self) -> float | None:
        """Seconds from ready to finished: what the SLA measures."""
        return seconds(self.ready_at, self.finished_at)


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end``, if both happened."""
    return (end - start).total_seconds() if start and end else None


class StepInfo(BaseModel):
    """One step of an instance's graph: what it waits for, where it stands, its worst light."""

    id: str
    index: int
    #: The steps it waits for.
    after: list[str]
    #: A mapped step's path (``None`` for a plain step).
    map: str | None
    #: ``waiting`` (for its predecessors), ``pending``, ``running``, ``done``, ``failed`` or ``cancelled``.
    status: str
    #: The worst light of its attempts (its items', for a mapped step), read from their clocks while open.
    light: str
    #: Attempts so far (all items' for a mapped step).
    attempts: int
    #: Its SLA as defined (``"5m"``, ``"2bd"``; working time under a calendar), not the wall span it spans.
    sla: str | None = None
    #: A mapped step's items by the status of their latest attempt, and how many there are.
    items: dict[str, int] | None = None
    item_count: int | None = None
    #: Who ends it: ``worker``, ``human`` (a person, from her inbox), ``wait`` (a signal) or ``timer`` (the clock).
    kind: str = StepKind.WORKER.value
    #: A human step: who may claim it (its latest attempt's candidates, as reassigned), and who holds it now.
    assign: dict[str, list[str]] | None = None
    held_by: str | None = None
    #: A waiting step: the signal it waits for, and whether one came before the step was ready and is kept for it.
    wait_for: str | None = None
    signal_kept: bool | None = None
    #: A timer: its sleep as defined, and when it ends (``None`` until it is ready).
    sleep: str | None = None
    wake_at: datetime | None = None
    #: Its escalation ladder: how many rungs it has (``None``: the default ladder), and how many its latest attempt
    #: fired (``oms status``: ``escalated 2 of 4``).
    escalations: int | None = None
    escalated: int | None = None


#: A step none of whose attempts is queued yet: it waits for its predecessors.
WAITING = "waiting"
#: A step's status, from its latest attempts' (each item's, for a mapped step): the first of these any has.
STEP_PRECEDENCE = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.RUNNING, TaskStatus.PENDING,
                   TaskStatus.LAPSED, TaskStatus.DONE)
#: A mapped step's items counted by their latest attempt's status (a lapsed attempt is followed by another).
ITEM_COUNTS = (TaskStatus.DONE, TaskStatus.RUNNING, TaskStatus.PENDING, TaskStatus.FAILED, TaskStatus.CANCELLED)


def _steps(definition: Definition, tasks: list[TaskInfo], results: dict[str, Any], now: datetime,
           kept: set[str]) -> list[StepInfo]:
    """The graph's steps as they stand; ``kept``: the signals received before their steps were ready."""
    graph = definition.graph
    steps = []
    for index, step in enumerate(definition.steps):
        mine = [t for t in tasks if t.step_index == index]
        latest = {t.item_index: t for t in sorted(mine, key=lambda t: t.attempt)}  # the last attempt of each item
        states = [TaskStatus(t.status) for t in latest.values()]
        if not states:  # a map over nothing is done
            status = TaskStatus.DONE if step.map and step.id in results else WAITING
        elif all(s is TaskStatus.DONE for s in states):
            status = TaskStatus.DONE
        else:
            status = next(s for s in STEP_PRECEDENCE if s in states)
        steps.append(StepInfo(
            id=step.id, index=index, after=[definition.steps[p].id for p in graph.predecessors[index]], map=step.map,
            status=status, light=worst(*(t.light_now(now) for t in mine)), attempts=len(mine),
            sla=None if step.sla is None else format_sla(step.sla),
            items={s.value: states.count(s) for s in ITEM_COUNTS}
            if step.map else None,
            item_count=len(latest) if step.map else None,
            **kind_fields(step, max(mine, key=lambda t: t.attempt) if mine else None, kept),
            **_ladder(step.escalations, max(mine, key=lambda t: t.attempt).rung if mine else None),
        ))
    return steps


def _ladder(rungs: list[Any] | None, fired: int | None) -> dict[str, Any]:
    """A ladder's size and the rungs fired, as :class:`StepInfo` and :class:`InstanceInfo` show them."""
    if rungs is None:
        return {"escalations": None, "escalated": None}
    return {"escalations": len(rungs), "escalated": fired or 0}


class InstanceInfo(BaseModel):
    """A workflow instance: status, where it is, what its steps returned."""

    id: str
    workflow_id: str
    version: int
    status: str
    #: Id of the step the instance is at (the last one once it is done).
    current_step: str
    #: The case's own name it was started with (a form number), if any.
    business_key: str | None = None
    payload: dict[str, Any]
    results: dict[str, Any]
    error: str | None
    #: The instance's own SLA light (green when the workflow has no ``sla``), as last recorded by the scanner.
    light: str
    warn_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    tasks: list[TaskInfo]
    #: The graph: each step with its predecessors, status and worst light (a mapped step as one entry).
    steps: list[StepInfo]
    #: The workflow's own escalation ladder (on its ``sla``): how many rungs it has (``None``: the default ladder),
    #: and how many have fired.
    escalations: int | None = None
    escalated: int | None = None

    def worst_light(self, now: datetime) -> str:
        """The worst of the instance's own light and its steps', each read from its clock at ``now`` (as ``oms
        list`` and the page show an instance)."""
        own = seen_light(self.light, self.warn_at, self.expires_at, self.finished_at, now)
        return worst(own, *(task.light_now(now) for task in self.tasks))


class Event(BaseModel):
    """One row of the event log."""

    id: int
    kind: str
    at: datetime
    instance_id: str
    task_id: str | None
    step_id: str | None
    attempt: int | None
    data: dict[str, Any]


def _instance(session: Session, instance_id: str) -> InstanceRow:
    instance = session.get(InstanceRow, check_id(instance_id, "instance"))
    if instance is None:
        raise UnknownInstance(instance_id)
    return instance


def get_instance(instance_id: str) -> InstanceInfo:
    """The instance with its tasks in order. Raises ``UnknownInstance``."""
    with transaction() as session:
        row = _instance(session, instance_id)
        definition, _ = load_definition(session, row.workflow_id, row.version)
        rows = session.scalars(
            select(TaskRow).where(TaskRow.instance_id == instance_id)
            .order_by(TaskRow.step_index, TaskRow.item_index, TaskRow.attempt)
        ).all()
        tasks = [TaskInfo.model_validate(t, from_attributes=True) for t in rows]
        return InstanceInfo(
            id=row.id,
            workflow_id=row.workflow_id,
            version=row.version,
            status=row.status,
            current_step=definition.steps[row.current_step].id,
            business_key=row.business_key,
            payload=row.payload,
            results=row.results,
            error=row.error,
            light=row.light,
            warn_at=row.warn_at,
            expires_at=row.expires_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            tasks=tasks,
            **_ladder(definition.escalations, row.rung),
            steps=_steps(definition, tasks, row.results, datetime.now(UTC),
                         {s.name for s in signals.received(session.connection(), row.id) if s.task_id is None}),
        )


def history(instance_id: str) -> list[Event]:
    """The instance's events, oldest first. Raises ``UnknownInstance``."""
    with transaction() as session:
        _instance(session, instance_id)
        rows = session.scalars(select(EventRow).where(EventRow.instance_id == instance_id).order_by(EventRow.id))
        return [Event.model_validate(r, from_attributes=True) for r in rows]


class InstanceSummary(BaseModel):
    """One line of ``oms list``: an instance and the worst light it has seen."""

    id: str
    workflow_id: str
    version: int
    status: str
    #: Id of the step the instance is at (the last one once it is done).
    current_step: str | None
    #: The worst of the instance's own light and its steps' lights.
    light: str
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    business_key: str | None = None


def list_instances(
    workflow_id: str | None = None, status: str | None = None, light: str | None = None, limit: int = 50,
    now: datetime | None = None, before: tuple[datetime, str] | None = None, business_key: str | None = None,
    escalations: bool = True,
) -> list[InstanceSummary]:
    """The newest instances, filtered by workflow, status, worst light and business key; without ``escalations``,
    the engine's own escalation instances (``oms.sla_violation``…) are left out unless ``workflow_id`` names one.

    ``before``: only instances after this ``(created_at, id)`` in the order (newest
    first): the last line of the previous page, for paging through a long list.

    An instance's light is the worst of its own and its steps', each read as
    :mod:`oms.lights` reads it (the clock at ``now`` too: an overdue step is red before
    the scanner has seen it), as ``oms status`` shows them.
    """
    if light is not None and light not in LIGHTS:
        raise InvalidArgument(f"unknown light {light!r}: expected one of {', '.join(LIGHTS)}")
    if status is not None and status not in {s.value for s in InstanceStatus}:
        expected = ", ".join(s.value for s in InstanceStatus)
        raise InvalidArgument(f"unknown status {status!r}: expected one of {expected}")
    if business_key is not None:
        check_key(business_key, "business key")
    if workflow_id is not None:
        check_workflow_id(workflow_id)
    now = now or datetime.now(UTC)
    steps = (
        select(
            TaskRow.instance_id,
            func.max(seen_rank(TaskRow.light, TaskRow.warn_at, TaskRow.expires_at,
                               func.coalesce(TaskRow.paused_at, TaskRow.finished_at), now))
            .label("rank"),
        )
        .group_by(TaskRow.instance_id)
        .subquery()
    )
    current = (
        select(TaskRow.step_id)
        .where(TaskRow.instance_id == InstanceRow.id, TaskRow.step_index == InstanceRow.current_step)
        .limit(1)
        .scalar_subquery()
    )
    rank = func.coalesce(steps.c.rank, 0)
    own = seen_rank(InstanceRow.light, InstanceRow.warn_at, InstanceRow.expires_at, InstanceRow.finished_at, now)
    worst = case((own > rank, own), else_=rank)
    query = (
        select(InstanceRow, current, worst)
        .outerjoin(steps, steps.c.instance_id == InstanceRow.id)
        .order_by(InstanceRow.created_at.desc(), InstanceRow.id.desc())
        .limit(limit)
    )
    if before is not None:
        moment, last_id = before
        query = query.where(or_(InstanceRow.created_at < moment,
                                and_(InstanceRow.created_at == moment, InstanceRow.id < last_id)))
    if workflow_id is not None:
        query = query.where(InstanceRow.workflow_id == workflow_id)
    elif not escalations:
        query = query.where(~InstanceRow.workflow_id.startswith(SYSTEM_PREFIX, autoescape=True))
    if status is not None:
        query = query.where(InstanceRow.status == status)
    if business_key is not None:
        query = query.where(InstanceRow.business_key == business_key)
    if light is not None:
        query = query.where(worst == LIGHTS.index(light))
    with transaction() as session:
        return [
            InstanceSummary(
                id=row.id, workflow_id=row.workflow_id, version=row.version, status=row.status,
                current_step=step_id, light=LIGHTS[rank_value], created_at=row.created_at,
                finished_at=row.finished_at, error=row.error, business_key=row.business_key,
            )
            for row, step_id, rank_value in session.execute(query)
        ]


