"""HMS-OMS: workflows of steps with SLAs, run on Celery, every transition logged."""

from __future__ import annotations

from .attach import AttachRefused, attach
from .catalog import Calendar, Workflow
from .celery.app import app
from .celery.config import configure
from .engine.control import cancel_workflow, retry_workflow
from .engine.people import claim, disable_user, reassign, release
from .engine.signals import Receipt, signal, signal_by_key
from .engine.starts import start_workflow, start_workflows
from .exceptions import (
    BrokerUnavailable,
    BusinessKeyInUse,
    ConfigurationError,
    Conflict,
    IdempotencyConflict,
    InstanceFinished,
    InvalidArgument,
    InvalidDefinition,
    InvalidPayload,
    InvalidTransition,
    LeaseLost,
    NotAHumanStep,
    NotAssigned,
    NotLeaseHolder,
    OmsError,
    SchemaAhead,
    SchemaBehind,
    SchemaError,
    SignalRefused,
    TaskAlreadyFinished,
    TaskClaimed,
    TaskNotClaimed,
    TaskNotFound,
    TooManyItems,
    UnknownBusinessKey,
    UnknownCalendar,
    UnknownInstance,
    UnknownSignal,
    UnknownUser,
    UnknownWorkflow,
)
from .model.definitions import Step
from .model.forms import FormError
from .reads import Event, InstanceInfo, get_instance, history, overdue, sla_summary
from .reads.inbox import HumanTask, InboxItem, human_task, inbox
from .sla.scanner import scan_sla
from .store.users import User, list_users
from .store.users import create as create_user
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
    # people in the loop: human steps, signals (business keys: start_workflow(..., business_key=...))
    "inbox",
    "human_task",
    "claim",
    "release",
    "reassign",
    "signal",
    "signal_by_key",
    "create_user",
    "disable_user",
    "list_users",
    "InboxItem",
    "HumanTask",
    "Receipt",
    "User",
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
    # errors: every class of oms.exceptions (tests/unit/test_front_door.py holds the README to these names)
    "OmsError",
    "InvalidDefinition",
    "InvalidArgument",
    "InvalidPayload",
    "IdempotencyConflict",
    "TooManyItems",
    "UnknownWorkflow",
    "UnknownInstance",
    "UnknownCalendar",
    "UnknownUser",
    "UnknownSignal",
    "UnknownBusinessKey",
    "BusinessKeyInUse",
    "InvalidTransition",
    "InstanceFinished",
    "TaskNotFound",
    "TaskNotClaimed",
    "TaskAlreadyFinished",
    "LeaseLost",
    "NotLeaseHolder",
    "NotAHumanStep",
    "NotAssigned",
    "TaskClaimed",
    "SignalRefused",
    "FormError",
    "Conflict",
    "ConfigurationError",
    "SchemaError",
    "SchemaBehind",
    "SchemaAhead",
    "BrokerUnavailable",
    "configure",
    # the Celery app (celery -A oms ...), or the shop's own: oms.attach(app) in proj/celery.py
    "app",
    "attach",
    "AttachRefused",
]
