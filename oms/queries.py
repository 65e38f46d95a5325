"""Reading instances and their event log: the read side of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from .db import transaction
from .definitions import load_definition
from .models import EventRow, TaskRow
from .transitions import get_instance_row


class TaskInfo(BaseModel):
    """One attempt at one step, as stored."""

    id: str
    step_id: str
    step_index: int
    topic: str
    attempt: int
    status: str
    worker_id: str | None
    error: str | None
    result: dict[str, Any] | None
    ready_at: datetime
    expires_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class InstanceInfo(BaseModel):
    """A workflow instance: status, where it is, what its steps returned."""

    id: str
    workflow_id: str
    version: int
    status: str
    #: Id of the step the instance is at (the last one once it is done).
    current_step: str
    payload: dict[str, Any]
    results: dict[str, Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    tasks: list[TaskInfo]


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


def get_instance(instance_id: str) -> InstanceInfo:
    """The instance with its tasks in order. Raises ``UnknownInstance``."""
    with transaction() as session:
        row = get_instance_row(session, instance_id)
        definition, _ = load_definition(session, row.workflow_id, row.version)
        tasks = session.scalars(
            select(TaskRow).where(TaskRow.instance_id == instance_id).order_by(TaskRow.step_index, TaskRow.attempt)
        ).all()
        return InstanceInfo(
            id=row.id,
            workflow_id=row.workflow_id,
            version=row.version,
            status=row.status,
            current_step=definition.steps[row.current_step].id,
            payload=row.payload,
            results=row.results,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            tasks=[TaskInfo.model_validate(t, from_attributes=True) for t in tasks],
        )


def history(instance_id: str) -> list[Event]:
    """The instance's events, oldest first. Raises ``UnknownInstance``."""
    with transaction() as session:
        get_instance_row(session, instance_id)
        rows = session.scalars(select(EventRow).where(EventRow.instance_id == instance_id).order_by(EventRow.id))
        return [Event.model_validate(r, from_attributes=True) for r in rows]
