"""Statuses, and the one table of legal transitions, each naming the event it writes."""

from __future__ import annotations

from enum import Enum


class TaskStatus(str, Enum):
    """Status of one attempt at one step (a row of the task table)."""

    PENDING = "pending"  #: offered on its topic, waiting for a worker
    RUNNING = "running"  #: claimed by a push or pull worker
    DONE = "done"  #: completed; the workflow moved on
    FAILED = "failed"  #: this attempt failed (a retry, if any, is a new row)


class InstanceStatus(str, Enum):
    """Status of one run of a workflow."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: SLA lights, best to worst: green until ``warn_at``, yellow until ``expires_at``, red after.
GREEN, YELLOW, RED = "green", "yellow", "red"
LIGHTS = (GREEN, YELLOW, RED)

#: Statuses after which nothing more happens.
FINISHED_TASK = frozenset({TaskStatus.DONE, TaskStatus.FAILED})
FINISHED_INSTANCE = frozenset({InstanceStatus.DONE, InstanceStatus.FAILED, InstanceStatus.CANCELLED})

#: ``(old, new) -> event kinds`` (the first is the default). ``None`` as old status
#: means the row is being created. Anything not listed is refused with
#: :class:`~oms.exceptions.InvalidTransition`.
TASK_TRANSITIONS: dict[tuple[TaskStatus | None, TaskStatus], tuple[str, ...]] = {
    # first attempt offered; a later attempt (after a failure or a lost lease)
    (None, TaskStatus.PENDING): ("task.queued", "task.retried"),
    # claimed by a push worker or a pull worker's fetch_task
    (TaskStatus.PENDING, TaskStatus.RUNNING): ("task.started",),
    (TaskStatus.RUNNING, TaskStatus.DONE): ("task.done",),
    # the attempt failed; or its pull worker's lease ran out; or its instance was cancelled
    (TaskStatus.RUNNING, TaskStatus.FAILED): ("task.failed", "task.lease_expired", "task.cancelled"),
    # the instance ended while the step was queued; or it failed its SLA while queued
    (TaskStatus.PENDING, TaskStatus.FAILED): ("task.cancelled", "task.failed"),
}

#: Why an attempt failed when its claim lapsed (``oms_tasks.error``).
LEASE_EXPIRED = "lease expired"
#: Why a step failed after losing ``max_deliveries`` claims to dying workers.
WORKER_LOST = "worker_lost"

INSTANCE_TRANSITIONS: dict[tuple[InstanceStatus | None, InstanceStatus], str] = {
    (None, InstanceStatus.RUNNING): "workflow.started",
    (InstanceStatus.RUNNING, InstanceStatus.DONE): "workflow.done",
    (InstanceStatus.RUNNING, InstanceStatus.FAILED): "workflow.failed",
    (InstanceStatus.RUNNING, InstanceStatus.CANCELLED): "workflow.cancelled",
    (InstanceStatus.PENDING, InstanceStatus.CANCELLED): "workflow.cancelled",
    (InstanceStatus.FAILED, InstanceStatus.RUNNING): "workflow.resumed",
}
