"""The engine's vocabulary: statuses, lights, event kinds, and the one table of legal moves.

Every status or light a row can take, and every event the log can hold, is a
member of an enum here; the statements that move rows (:mod:`oms.store.moves`)
take their SQL literals, and the schema its index conditions, from these members.
A move missing from the tables below is refused with
:class:`~oms.exceptions.InvalidTransition` when the code that needs it is loaded,
not when a row is written.
"""

from __future__ import annotations

from enum import StrEnum

from .exceptions import InvalidTransition


class TaskStatus(StrEnum):
    """Status of one attempt at one step (a row of the task table)."""

    PENDING = "pending"  #: offered on its topic, waiting for a worker (a person's claim, a signal, a timer's end)
    RUNNING = "running"  #: claimed by a push or pull worker or a person (or parked, its clock paused)
    DONE = "done"  #: completed; the workflow moved on
    FAILED = "failed"  #: this attempt failed (a retry, if any, is a new row)
    LAPSED = "lapsed"  #: its claim's lease ran out; the step is offered again (not a failure)
    CANCELLED = "cancelled"  #: its instance ended first: cancelled, or failed by another step


class StepKind(StrEnum):
    """Who ends a step: a worker (push or pull), a person from her inbox, an outside event, or the clock."""

    WORKER = "worker"  #: a handler, a shop's Celery task, or a pull worker on its topic
    HUMAN = "human"  #: ``assign``: a person of its groups or users claims and completes it
    WAIT = "wait"  #: ``wait_for``: done when the named signal arrives (``oms.signal``)
    TIMER = "timer"  #: ``sleep``: done when its time has passed (the SLA scan ends it)

    @property
    def topic(self) -> str:
        """The topic a step of this kind is recorded on: its own for a worker's, else ``oms.<kind>``, an engine
        name no worker may fetch and no message is published to."""
        return f"oms.{self.value}"

    @classmethod
    def of_topic(cls, topic: str) -> StepKind:
        """The kind of a step recorded on ``topic``: an engine topic's (``oms.human``…), else a worker's."""
        return next((kind for kind in cls if kind is not cls.WORKER and kind.topic == topic), cls.WORKER)


class InstanceStatus(StrEnum):
    """Status of one run of a workflow."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Light(StrEnum):
    """An SLA light, best to worst: green until ``warn_at``, yellow until ``expires_at``, red after."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"

    @property
    def rank(self) -> int:
        """0 green, 1 yellow, 2 red: a light only gets worse (but for a prediction taken back)."""
        return LIGHTS.index(self)


GREEN, YELLOW, RED = Light.GREEN, Light.YELLOW, Light.RED
LIGHTS = (GREEN, YELLOW, RED)


class LightReason(StrEnum):
    """Why a light is what it is, when not the fraction rule (``oms_tasks.light_reason``)."""

    PREDICTED = "predicted"  #: yellow at once: the topic's pace will make the step late (:mod:`oms.sla.predict`)
    CLEARED = "cleared"  #: a prediction taken back; the step is not predicted again


PREDICTED, CLEARED = LightReason.PREDICTED, LightReason.CLEARED


class EventKind(StrEnum):
    """Kinds of row in the event log (``oms_events.kind``)."""

    WORKFLOW_STARTED = "workflow.started"
    WORKFLOW_DONE = "workflow.done"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    #: a failed instance run again (``retry_workflow``) from what did not finish
    WORKFLOW_RESUMED = "workflow.resumed"
    TASK_QUEUED = "task.queued"  #: a step's first attempt offered
    TASK_RETRIED = "task.retried"  #: a later attempt offered (after a failure or a lapsed claim)
    TASK_STARTED = "task.started"  #: claimed by a worker, or by a person (``worker_id``: her name)
    #: a person's claim given back (she released it, was disabled, or a supervisor reassigned the step)
    TASK_RELEASED = "task.released"
    #: a human step's ``assign`` changed by a supervisor (``by``, ``users``, ``groups``)
    TASK_REASSIGNED = "task.reassigned"
    #: an outside event arrived for a waiting step (``name``, ``signal``: its id; ``kept``: its step not ready yet)
    SIGNAL_RECEIVED = "signal.received"
    TASK_DONE = "task.done"
    TASK_FAILED = "task.failed"
    TASK_LEASE_EXPIRED = "task.lease_expired"
    TASK_CANCELLED = "task.cancelled"
    #: a queued step's message published again (the reconciler); changes no status
    TASK_REDISPATCHED = "task.redispatched"
    #: a mapped step expanded into its items (``items``: how many; none completes it at once)
    STEP_MAPPED = "step.mapped"
    #: a step's SLA clock stopped (``act.pause_clock``, a handler's ``{"pause": reason}``), and ran again
    TASK_CLOCK_PAUSED = "task.clock_paused"
    TASK_CLOCK_RESUMED = "task.clock_resumed"
    TASK_SLA_WARNING = "task.sla_warning"
    TASK_SLA_VIOLATED = "task.sla_violated"
    TASK_SLA_WARNING_CLEARED = "task.sla_warning_cleared"
    WORKFLOW_SLA_WARNING = "workflow.sla_warning"
    WORKFLOW_SLA_VIOLATED = "workflow.sla_violated"
    #: a rung of the step's escalation ladder fired (``rung``: its index, ``at`` as written, ``due_at``, and what it
    #: did: ``notices`` ``[{id, target}]``, ``reassigned``, ``escalation`` (the instance started), ``policy``)
    TASK_ESCALATED = "task.escalated"
    #: a rung of the workflow's own ladder fired (on its ``sla``), with the same data
    WORKFLOW_ESCALATED = "workflow.escalated"
    #: the SLA scanner could not handle this row (the error is in the event); it looks again later
    TASK_SCAN_FAILED = "task.scan_failed"
    WORKFLOW_SCAN_FAILED = "workflow.scan_failed"


#: Statuses after which nothing more happens to an attempt, or to an instance.
OPEN_TASK = (TaskStatus.PENDING, TaskStatus.RUNNING)
FINISHED_TASK = (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.LAPSED, TaskStatus.CANCELLED)
FINISHED_INSTANCE = (InstanceStatus.DONE, InstanceStatus.FAILED, InstanceStatus.CANCELLED)

#: ``(old, new) -> event``. ``None`` as old status: the row is being created (a first
#: attempt is ``task.queued``, a later one ``task.retried``). Anything not listed is refused.
TASK_MOVES: dict[tuple[TaskStatus | None, TaskStatus], tuple[EventKind, ...]] = {
    (None, TaskStatus.PENDING): (EventKind.TASK_QUEUED, EventKind.TASK_RETRIED),
    (TaskStatus.PENDING, TaskStatus.RUNNING): (EventKind.TASK_STARTED,),  # claimed by a push or pull worker
    (TaskStatus.RUNNING, TaskStatus.DONE): (EventKind.TASK_DONE,),
    (TaskStatus.RUNNING, TaskStatus.FAILED): (EventKind.TASK_FAILED,),
    (TaskStatus.PENDING, TaskStatus.FAILED): (EventKind.TASK_FAILED,),  # its SLA breached while queued (on_breach)
    (TaskStatus.PENDING, TaskStatus.DONE): (EventKind.TASK_DONE,),  # a waiting step's signal came, a timer ran out
    (TaskStatus.RUNNING, TaskStatus.PENDING): (EventKind.TASK_RELEASED,),  # a person's claim given back
    (TaskStatus.RUNNING, TaskStatus.LAPSED): (EventKind.TASK_LEASE_EXPIRED,),  # its worker died, or its lease ran out
    (TaskStatus.PENDING, TaskStatus.CANCELLED): (EventKind.TASK_CANCELLED,),  # its instance ended first
    (TaskStatus.RUNNING, TaskStatus.CANCELLED): (EventKind.TASK_CANCELLED,),
}

INSTANCE_MOVES: dict[tuple[InstanceStatus | None, InstanceStatus], EventKind] = {
    (None, InstanceStatus.RUNNING): EventKind.WORKFLOW_STARTED,
    (InstanceStatus.RUNNING, InstanceStatus.DONE): EventKind.WORKFLOW_DONE,
    (InstanceStatus.RUNNING, InstanceStatus.FAILED): EventKind.WORKFLOW_FAILED,
    (InstanceStatus.RUNNING, InstanceStatus.CANCELLED): EventKind.WORKFLOW_CANCELLED,
    (InstanceStatus.PENDING, InstanceStatus.CANCELLED): EventKind.WORKFLOW_CANCELLED,
    (InstanceStatus.FAILED, InstanceStatus.RUNNING): EventKind.WORKFLOW_RESUMED,
}

#: ``(row kind, old light, new light) -> event``: what the SLA scanner records. A light
#: only gets worse, but for one move: a step turned yellow by a prediction (and by it
#: alone) turns green again, once, when a later scan predicts it on time. A step found
#: already late skips yellow.
LIGHT_MOVES: dict[tuple[str, Light, Light], EventKind] = {
    ("task", GREEN, YELLOW): EventKind.TASK_SLA_WARNING,
    ("task", GREEN, RED): EventKind.TASK_SLA_VIOLATED,
    ("task", YELLOW, RED): EventKind.TASK_SLA_VIOLATED,
    ("task", YELLOW, GREEN): EventKind.TASK_SLA_WARNING_CLEARED,
    ("instance", GREEN, YELLOW): EventKind.WORKFLOW_SLA_WARNING,
    ("instance", GREEN, RED): EventKind.WORKFLOW_SLA_VIOLATED,
    ("instance", YELLOW, RED): EventKind.WORKFLOW_SLA_VIOLATED,
}

#: Why an attempt failed after losing ``max_deliveries`` claims to dying workers (``oms_tasks.error``).
WORKER_LOST = "worker_lost"


def task_event(old: TaskStatus | None, new: TaskStatus, *, retried: bool = False, what: str = "task") -> EventKind:
    """The event of a task move (``retried``: a later attempt offered), or :class:`InvalidTransition`."""
    kinds = TASK_MOVES.get((old, new))
    if kinds is None:
        raise InvalidTransition(what, old.value if old else "(new)", new.value)
    return kinds[-1] if retried else kinds[0]


def instance_event(old: InstanceStatus | None, new: InstanceStatus, *, what: str = "workflow instance") -> EventKind:
    """The event of an instance move, or :class:`InvalidTransition` if the table forbids it."""
    kind = INSTANCE_MOVES.get((old, new))
    if kind is None:
        raise InvalidTransition(what, old.value if old else "(new)", new.value)
    return kind


def light_event(row: str, old: Light | str, new: Light | str) -> EventKind:
    """The event of a light change on a ``task`` or ``instance`` row, or :class:`InvalidTransition`."""
    kind = LIGHT_MOVES.get((row, Light(old), Light(new)))
    if kind is None:
        raise InvalidTransition(f"{row} light", str(old), str(new))
    return kind


def worst(*lights: Light | str) -> Light:
    """The worst of some lights (green for none)."""
    return max((Light(light) for light in lights), key=LIGHTS.index, default=GREEN)
