"""HMS-ACT: the task counter. Workers take steps by topic, pushed or pulled."""

from __future__ import annotations

from oms.engine.door import Task, TaskOutcome

from .clocks import pause_clock, resume_clock
from .exceptions import (
    InstanceFinished,
    InvalidArgument,
    InvalidPayload,
    LeaseLost,
    NotLeaseHolder,
    OmsError,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
)
from .pull import complete_task, complete_tasks, extend_lease, fail_task, fail_tasks, fetch_task, fetch_tasks
from .subscribe import Subscription, subscribe

__all__ = [
    # push workers
    "subscribe",
    "Subscription",
    # pull workers
    "fetch_task",
    "complete_task",
    "fail_task",
    "extend_lease",
    # pull workers, many steps per round trip
    "fetch_tasks",
    "complete_tasks",
    "fail_tasks",
    "TaskOutcome",
    # paused SLA clocks (waiting on the citizen)
    "pause_clock",
    "resume_clock",
    # what a worker holds
    "Task",
    # errors: every name of act.exceptions (tests/unit/test_front_door.py holds the README to these names)
    "OmsError",
    "TaskNotFound",
    "TaskNotClaimed",
    "TaskAlreadyFinished",
    "LeaseLost",
    "NotLeaseHolder",
    "InstanceFinished",
    "InvalidArgument",
    "InvalidPayload",
]
