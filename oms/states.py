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


#: Statuses after which nothing more happens.
FINISHED_TASK = frozenset({TaskStatus.DONE, TaskStatus.FAILED})
FINISHED_INSTANCE = frozenset({InstanceStatus.DONE, InstanceStatus.FAILED, InstanceStatus.CANCELLED})

#: ``(old, new) -> event kind``. ``None`` as old status means the row is being created.
#: Anything not listed is refused with :class:`~oms.exceptions.InvalidTransition`.
TASK_TRANSITIONS: dict[tuple[TaskStatus | None, TaskStatus], str] = {
    (None, TaskStatus.PENDING): "task.queued",  # first attempt offered
    (TaskStatus.PENDING, TaskStatus.RUNNING): "task.started",  # claimed by a worker
    (TaskStatus.RUNNING, TaskStatus.DONE): "task.done",
    (TaskStatus.RUNNING, TaskStatus.FAILED): "task.failed",
    (TaskStatus.PENDING, TaskStatus.FAILED): "task.cancelled",  # instance ended while queued
}

#: Event kind for an attempt after the first (``None -> pending`` again).
RETRY_EVENT = "task.retried"

INSTANCE_TRANSITIONS: dict[tuple[InstanceStatus | None, InstanceStatus], str] = {
    (None, InstanceStatus.RUNNING): "workflow.started",
    (InstanceStatus.RUNNING, InstanceStatus.DONE): "workflow.done",
    (InstanceStatus.RUNNING, InstanceStatus.FAILED): "workflow.failed",
    (InstanceStatus.RUNNING, InstanceStatus.CANCELLED): "workflow.cancelled",
    (InstanceStatus.PENDING, InstanceStatus.CANCELLED): "workflow.cancelled",
    (InstanceStatus.FAILED, InstanceStatus.RUNNING): "workflow.resumed",
}
