"""Errors a worker meets when completing or failing a task (shared with oms)."""

from __future__ import annotations

from oms.exceptions import (
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

__all__ = [
    "OmsError", "TaskNotFound", "TaskNotClaimed", "TaskAlreadyFinished", "LeaseLost", "InstanceFinished",
    "InvalidArgument", "InvalidPayload", "NotLeaseHolder",
]
