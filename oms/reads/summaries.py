"""SLA figures and lists: overdue steps, the SLA summary per step, the saved workflows."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select

from ..model.definitions import SYSTEM_PREFIX
from ..model.graph import Graph
from ..states import OPEN_TASK, RED, StepKind
from ..store.catalog import load_definition
from ..store.db import transaction
from ..store.tables import DefinitionRow, InstanceRow, TaskRow
from .instances import TaskInfo, seconds
from .kinds import kind_of


def overdue(limit: int = 1000) -> list[TaskInfo]:
    """Open tasks (pending or running) whose light is red, most overdue first (a paused clock is not overdue)."""
    with transaction() as session:
        rows = session.scalars(
            select(TaskRow)
            .where(TaskRow.light == RED, TaskRow.status.in_(OPEN_TASK),
                   TaskRow.paused_at.is_(None))
            .order_by(TaskRow.expires_at)
            .limit(limit)
        )
        return [TaskInfo.model_validate(r, from_attributes=True) for r in rows]


class StepSummary(BaseModel):
    """SLA figures for one step of one workflow."""

    workflow_id: str
    step_id: str
    green: int = 0
    yellow: int = 0
    red: int = 0
    #: Ready to claimed (a person's step: to the claim that completed it; released claims count as waiting).
    queue_wait_p50_s: float | None = None
    queue_wait_p95_s: float | None = None
    run_p50_s: float | None = None
    run_p95_s: float | None = None
    #: Who ends the step (``worker``, ``human``, ``wait``, ``timer``): nobody claims a waiting step or a timer, so
    #: they have no queue wait nor run time, only their total.
    kind: str = StepKind.WORKER.value
    #: Ready to finished, what the SLA measures.
    total_p50_s: float | None = None
    total_p95_s: float | None = None


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(round(fraction * (len(ordered) - 1)), len(ordered) - 1)]


def sla_summary(since: datetime | None = None) -> list[StepSummary]:
    """Counts by light and p50/p95 queue wait and run time, per workflow and step.

    Args:
        since: only attempts that became ready at or after this moment (default: all).
    """
    query = select(
        TaskRow.workflow_id, TaskRow.step_id, TaskRow.topic, TaskRow.light, TaskRow.ready_at, TaskRow.started_at,
        TaskRow.finished_at
    ).where(~TaskRow.workflow_id.startswith(SYSTEM_PREFIX))
    if since is not None:
        query = query.where(TaskRow.ready_at >= since)
    summaries: dict[tuple[str, str], StepSummary] = {}
    figures: dict[tuple[str, str, str], list[float]] = defaultdict(list)  # (workflow, step, figure) -> seconds
    with transaction() as session:
        for workflow_id, step_id, topic, light, ready, started, finished in session.execute(query):
            key = (workflow_id, step_id)
            summary = summaries.setdefault(key, StepSummary(workflow_id=workflow_id, step_id=step_id,
                                                            kind=kind_of(topic)))
            setattr(summary, light, getattr(summary, light) + 1)
            for figure, value in (("queue_wait", seconds(ready, started)), ("run", seconds(started, finished)),
                                  ("total", seconds(ready, finished))):
                if value is not None:
                    figures[(*key, figure)].append(value)
    for key, summary in summaries.items():
        for figure in ("queue_wait", "run", "total"):
            values = figures.get((*key, figure), [])
            setattr(summary, f"{figure}_p50_s", _percentile(values, 0.5))
            setattr(summary, f"{figure}_p95_s", _percentile(values, 0.95))
    return sorted(summaries.values(), key=lambda s: (s.workflow_id, s.step_id))


class WorkflowSummary(BaseModel):
    """One line of ``oms workflow list``: a definition's latest version and its instances."""

    id: str
    latest_version: int
    steps: list[str]
    description: str
    saved_at: datetime
    #: Instances of any version, by status.
    instances: dict[str, int]
    #: The steps in the order they can run, those that run together in braces:
    #: ``collect_form > {charge_fee, check_permits} > inspect_site``.
    flow: str = ""


def flow(graph: Graph) -> str:
    """A graph's steps by stage, the steps of one stage (which can run at the same time) in braces."""
    names = [[graph.ids[i] for i in stage] for stage in graph.stages()]
    return " > ".join(ids[0] if len(ids) == 1 else "{" + ", ".join(ids) + "}" for ids in names)


def list_workflows(include_system: bool = False) -> list[WorkflowSummary]:
    """Every saved workflow at its latest version (the engine's own ``oms.*`` ones on request)."""
    latest = (
        select(DefinitionRow.workflow_id, func.max(DefinitionRow.version).label("version"))
        .group_by(DefinitionRow.workflow_id)
        .subquery()
    )
    query = (
        select(DefinitionRow)
        .join(latest, (latest.c.workflow_id == DefinitionRow.workflow_id) & (latest.c.version == DefinitionRow.version))
        .order_by(DefinitionRow.workflow_id)
    )
    if not include_system:
        query = query.where(~DefinitionRow.workflow_id.startswith(SYSTEM_PREFIX))
    counts: dict[str, dict[str, int]] = {}
    with transaction() as session:
        rows = session.scalars(query).all()
        graphs = {row.workflow_id: load_definition(session, row.workflow_id, row.version)[0].graph for row in rows}
        tally = select(InstanceRow.workflow_id, InstanceRow.status, func.count()).group_by(
            InstanceRow.workflow_id, InstanceRow.status
        )
        for workflow_id, status, count in session.execute(tally):
            counts.setdefault(workflow_id, {})[status] = count
    return [
        WorkflowSummary(
            id=row.workflow_id, latest_version=row.version, steps=[s["id"] for s in row.spec["steps"]],
            flow=flow(graphs[row.workflow_id]),
            description=row.spec.get("description", ""), saved_at=row.created_at,
            instances=counts.get(row.workflow_id, {}),
        )
        for row in rows
    ]
