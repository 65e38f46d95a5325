"""HMS-ACT: the task counter. Workers take steps by topic, pushed or pulled."""

from __future__ import annotations

from oms.engine.door import Task

from .clocks import pause_clock, resume_clock
from .exceptions import (
    InstanceFinished,
    LeaseLost,
    NotLeaseHolder,
    TaskAlreadyFinished,
    TaskNotClaimed,
    TaskNotFound,
)
from .pull import complete_task, extend_lease, fail_task, fetch_task
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
    # paused SLA clocks (waiting on the citizen)
    "pause_clock",
    "resume_clock",
    # what a worker holds
    "Task",
    # errors
    "TaskNotFound",
    "TaskNotClaimed",
    "TaskAlreadyFinished",
    "LeaseLost",
    "NotLeaseHolder",
    "InstanceFinished",
]
