"""Statuses, lights and the one table of legal transitions, each naming the event it writes.

Every status or light a row can take is written by a move named here: the ORM
moves (:mod:`oms.transitions`) and the hot-path statements (:mod:`oms.store`) both
ask :func:`task_event` / :func:`instance_event` / :func:`light_event` for the event
kind, so a move missing from these tables fails when the code is loaded, not when a
row is written.
"""

from __future__ import annotations

from enum import Enum

from .exceptions import InvalidTransition


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
OPEN_TASK = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})
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

INSTANCE_TRANSITIONS: dict[tuple[InstanceStatus | None, InstanceStatus], str] = {
    (None, InstanceStatus.RUNNING): "workflow.started",
    (InstanceStatus.RUNNING, InstanceStatus.DONE): "workflow.done",
    (InstanceStatus.RUNNING, InstanceStatus.FAILED): "workflow.failed",
    (InstanceStatus.RUNNING, InstanceStatus.CANCELLED): "workflow.cancelled",
    (InstanceStatus.PENDING, InstanceStatus.CANCELLED): "workflow.cancelled",
    (InstanceStatus.FAILED, InstanceStatus.RUNNING): "workflow.resumed",
}

#: ``(row kind, old light, new light) -> event``: what the SLA scanner records. A light
#: only gets worse, but for one move: a step turned yellow by a prediction (and by it
#: alone) turns green again, once, when a later scan predicts it on time. A step found
#: already late skips yellow.
LIGHT_TRANSITIONS: dict[tuple[str, str, str], str] = {
    ("task", GREEN, YELLOW): "task.sla_warning",
    ("task", GREEN, RED): "task.sla_violated",
    ("task", YELLOW, RED): "task.sla_violated",
    ("task", YELLOW, GREEN): "task.sla_warning_cleared",
    ("instance", GREEN, YELLOW): "workflow.sla_warning",
    ("instance", GREEN, RED): "workflow.sla_violated",
    ("instance", YELLOW, RED): "workflow.sla_violated",
}

#: Events that change no status: a queued step whose message was published again; a
#: mapped step expanded into its items (``items``: how many; none completes it at once).
TASK_REDISPATCHED = "task.redispatched"
STEP_MAPPED = "step.mapped"
#: A step's SLA clock stopped (``act.pause_clock``, a handler's ``{"pause": reason}``), and ran again.
TASK_CLOCK_PAUSED = "task.clock_paused"
TASK_CLOCK_RESUMED = "task.clock_resumed"
#: Why a light is yellow, or was: a prediction (:mod:`oms.predict`); taken back, never predicted again.
PREDICTED, CLEARED = "predicted", "cleared"
#: The SLA scanner could not handle this row (the error is in the event); it looks again later.
TASK_SCAN_FAILED = "task.scan_failed"
WORKFLOW_SCAN_FAILED = "workflow.scan_failed"

#: Why an attempt failed when its claim lapsed (``oms_tasks.error``).
LEASE_EXPIRED = "lease expired"
#: Why a step failed after losing ``max_deliveries`` claims to dying workers.
WORKER_LOST = "worker_lost"


def ended_with_instance(status: str, reason: str) -> str:
    """The error of an open task ended because its instance ended (cancelled, or failed by another step)."""
    return f"instance {status}: {reason}"


def is_ended_with_instance(error: str | None) -> bool:
    return bool(error) and any(error.startswith(f"instance {s.value}: ")  # type: ignore[union-attr]
                               for s in (InstanceStatus.CANCELLED, InstanceStatus.FAILED))


def task_event(old: TaskStatus | None, new: TaskStatus, kind: str | None = None, *, what: str = "task") -> str:
    """The event kind of a task move, or :class:`InvalidTransition` if the table forbids it."""
    kinds = TASK_TRANSITIONS.get((old, new), ())
    if not kinds or (kind is not None and kind not in kinds):
        raise InvalidTransition(what, old.value if old else "(new)", new.value)
    return kind or kinds[0]


def instance_event(old: InstanceStatus | None, new: InstanceStatus, *, what: str = "workflow instance") -> str:
    """The event kind of an instance move, or :class:`InvalidTransition` if the table forbids it."""
    kind = INSTANCE_TRANSITIONS.get((old, new))
    if kind is None:
        raise InvalidTransition(what, old.value if old else "(new)", new.value)
    return kind


def light_event(row: str, old: str, new: str) -> str:
    """The event kind of a light change on a ``task`` or ``instance`` row."""
    kind = LIGHT_TRANSITIONS.get((row, old, new))
    if kind is None:
        raise InvalidTransition(f"{row} light", old, new)
    return kind
