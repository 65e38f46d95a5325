"""The ticket a worker holds: one attempt at one step, with the instance's payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from oms.models import TaskRow


@dataclass(frozen=True)
class Task:
    """What a handler or a pull worker gets. ``id`` names this attempt in ``complete_task``."""

    id: str
    instance_id: str
    workflow_id: str
    step_id: str
    topic: str
    attempt: int
    payload: dict[str, Any]
    #: Results of the instance's earlier steps, by step id.
    results: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None

    @classmethod
    def from_row(cls, row: TaskRow, results: dict[str, Any]) -> Task:
        return cls(
            id=row.id,
            instance_id=row.instance_id,
            workflow_id=row.workflow_id,
            step_id=row.step_id,
            topic=row.topic,
            attempt=row.attempt,
            payload=row.payload,
            results=dict(results),
            expires_at=row.expires_at,
            lease_expires_at=row.lease_expires_at,
            worker_id=row.worker_id,
        )
