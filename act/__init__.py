"""HMS-ACT: the task counter. Workers take steps by topic, pushed or pulled."""

from __future__ import annotations

from oms.door import Task

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
