"""The ticket a worker holds: one attempt at one step, with the instance's payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


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


@dataclass(frozen=True)
class TaskOutcome:
    """What a batch call (``complete_tasks``, ``fail_tasks``) did with one of its tasks: ``done`` (completed),
    ``failed`` (its failure recorded: retried or the instance failed, as for ``fail_task``), or ``refused``: the
    task was not changed, for the reason the one-at-a-time call would have raised (``error``, its name, such as
    ``LeaseLost``; ``detail``, its sentence)."""

    task_id: str
    status: Literal["done", "failed", "refused"]
    error: str | None = None
    detail: str | None = None
    #: The holder sent again how it had finished the task (its answer was lost): the first call's success, unchanged.
    repeat: bool = False
    #: The refusal as the one-at-a-time call raises it (``isinstance(outcome.exception, LeaseLost)``).
    exception: Exception | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the task's outcome was recorded."""
        return self.status != "refused"

    @classmethod
    def refused(cls, task_id: str, exc: Exception) -> TaskOutcome:
        return cls(task_id, "refused", type(exc).__name__, str(exc), exception=exc)


@dataclass(frozen=True)
class Place:
    """What a step offered again after its claim lapsed keeps of the lost attempt: its place in its topic's queue
    (``ready_at``: pull claims take the oldest first) and its clock (the light and the escalation rungs already
    recorded, so that none is recorded twice). Its worker died; the citizen has been waiting all along."""

    ready_at: datetime
    light: str
    rung: int | None = None
