"""Reading instances, their event log and SLA figures: the read side of the public API."""

from __future__ import annotations

from .instances import Event, InstanceInfo, InstanceSummary, StepInfo, TaskInfo, get_instance, history, list_instances
from .summaries import StepSummary, WorkflowSummary, list_workflows, overdue, sla_summary

__all__ = [
    "Event", "InstanceInfo", "InstanceSummary", "StepInfo", "StepSummary", "TaskInfo", "WorkflowSummary",
    "get_instance", "history", "list_instances", "list_workflows", "overdue", "sla_summary",
]
