"""HMS-OMS: workflows of steps with SLAs, run on Celery, every transition logged."""

from __future__ import annotations

from .attach import AttachRefused, attach
from .catalog import Calendar, Workflow
from .celery.app import app
from .celery.config import configure
from .engine.control import cancel_workflow, retry_workflow
from .engine.starts import start_workflow, start_workflows
from .exceptions import (
    IdempotencyConflict,
    InvalidDefinition,
    InvalidPayload,
    OmsError,
    TooManyItems,
    UnknownCalendar,
    UnknownInstance,
    UnknownWorkflow,
)
from .model.definitions import Step
from .reads import Event, InstanceInfo, get_instance, history, overdue, sla_summary
from .sla.scanner import scan_sla
from .track import track

__all__ = [
    # defining and running workflows
    "Workflow",
    "Step",
    "Calendar",
    "start_workflow",
    "start_workflows",
    "cancel_workflow",
    "retry_workflow",
    # SLA lights on plain Celery canvases (their signals are connected by importing oms)
    "track",
    # reading state
    "get_instance",
    "history",
    "overdue",
    "sla_summary",
    # the SLA scanner (run by beat; callable with a clock for tests)
    "scan_sla",
    "InstanceInfo",
    "Event",
    # errors
    "OmsError",
    "InvalidDefinition",
    "InvalidPayload",
    "IdempotencyConflict",
    "TooManyItems",
    "UnknownWorkflow",
    "UnknownInstance",
    "UnknownCalendar",
    "configure",
    # the Celery app (celery -A oms ...), or the shop's own: oms.attach(app) in proj/celery.py
    "app",
    "attach",
    "AttachRefused",
]
