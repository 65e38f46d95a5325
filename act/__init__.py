"""HMS-ACT: the task counter. Workers take steps by topic, pushed or pulled."""

from __future__ import annotations

from .exceptions import InstanceFinished, TaskAlreadyFinished, TaskNotClaimed, TaskNotFound
from .subscribe import Subscription, subscribe
from .task import Task

__all__ = [
    # push workers
    "subscribe",
    "Subscription",
    # what a worker holds
    "Task",
    # errors
    "TaskNotFound",
    "TaskNotClaimed",
    "TaskAlreadyFinished",
    "InstanceFinished",
]
