"""The ticket a worker holds: one attempt at one step, with the instance's payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
    #: Where the step sits: the definition version the instance runs and the step's index in it.
    version: int = 1
    step_index: int = 0
    #: Failed attempts at this step before this one (compared with the step's ``retries``).
    failures: int = 0
    #: A mapped step's item: the value this attempt handles, and its position in the list.
    item: Any = None
    item_index: int | None = None
