"""Errors raised by oms. Each class's docstring is its default message.

    OmsError
    ├── InvalidDefinition      a workflow definition breaks a rule
    ├── InvalidArgument        an argument that cannot be used (malformed id, empty reason, bad duration)
    ├── InvalidPayload         a payload or result is not a JSON object of allowed size
    │   └── TooManyItems       a mapped step's list is longer than OMS_MAX_MAP_ITEMS
    ├── IdempotencyConflict    an idempotency key already started an instance with another payload
    ├── UnknownWorkflow        no definition has this id
    ├── UnknownInstance        no instance has this id
    ├── InvalidTransition      a status change the state machine does not allow
    ├── TaskNotFound, TaskNotClaimed, TaskAlreadyFinished (LeaseLost), NotLeaseHolder, InstanceFinished
    │                          a worker call that cannot apply to the task as it stands
    ├── UnknownUser, NotAssigned, TaskClaimed, NotAHumanStep
    │                          a person's call on a human step that cannot apply
    ├── UnknownSignal (InvalidArgument), SignalRefused, UnknownBusinessKey, BusinessKeyInUse
    │                          a signal or a business key that cannot be used
    ├── ConfigurationError     settings that cannot work (unreachable service, bad URL)
    │   └── SchemaError        the database schema is missing, behind or ahead of this code
    │       (SchemaBehind, SchemaAhead)
    ├── Conflict               concurrent changes kept colliding; trying again may succeed
    └── BrokerUnavailable      a step was recorded but could not be published (the reconciler will)
"""

from __future__ import annotations

import re

from pydantic import ValidationError

#: What an instance id and a task id look like: a prefix and 32 hex digits (matched in full).
ID_PATTERNS = {"instance": r"wf-[0-9a-f]{32}", "task": r"tk-[0-9a-f]{32}"}
_IDS = {kind: re.compile(pattern) for kind, pattern in ID_PATTERNS.items()}


class OmsError(Exception):
    """An oms error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidDefinition(OmsError, ValueError):
    """The workflow definition is invalid."""


class UnknownCalendar(OmsError, LookupError):
    """No calendar has this id."""

    def __init__(self, calendar_id: str) -> None:
        self.calendar_id = calendar_id
        super().__init__(f"unknown calendar {calendar_id!r}: save it first (Calendar(...).save() or "
                         "oms calendar register FILE)")


class InvalidArgument(OmsError, ValueError):
    """An argument of an engine call is not acceptable."""


class InvalidPayload(OmsError, ValueError):
    """The payload must be a JSON object."""


class TooManyItems(InvalidPayload):
    """A mapped step's list has more items than ``OMS_MAX_MAP_ITEMS``."""

    def __init__(self, path: str, count: int, limit: int) -> None:
        self.path, self.count, self.limit = path, count, limit
        super().__init__(f"map path {path!r} has {count} items, more than OMS_MAX_MAP_ITEMS ({limit})")


class IdempotencyConflict(OmsError):
    """An idempotency key already started an instance of this workflow, with another payload."""

    def __init__(self, workflow_id: str, key: str, instance_id: str) -> None:
        self.workflow_id, self.key, self.instance_id = workflow_id, key, instance_id
        super().__init__(f"idempotency key {key!r} of workflow {workflow_id!r} already started {instance_id} with "
                         "another payload: nothing was started")


class UnknownWorkflow(OmsError, LookupError):
    """No workflow definition has this id."""

    def __init__(self, workflow_id: str, version: int | None = None) -> None:
        self.workflow_id = workflow_id
        self.version = version
        what = f"{workflow_id!r} version {version}" if version else repr(workflow_id)
        super().__init__(f"unknown workflow {what}: save its definition first")


class UnknownInstance(OmsError, LookupError):
    """No workflow instance has this id."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        super().__init__(f"unknown workflow instance {instance_id!r}")


class InvalidTransition(OmsError):
    """The state machine does not allow this status change."""

    def __init__(self, what: str, current: str, target: str, why: str | None = None) -> None:
        # a status enum's value, not its repr: "'cancelled' to 'running'"
        self.current, self.target = str(getattr(current, "value", current)), str(getattr(target, "value", target))
        super().__init__(f"{what} cannot go from {self.current!r} to {self.target!r}" + (f": {why}" if why else ""))


class ConfigurationError(OmsError):
    """The configuration cannot work."""


class SchemaError(ConfigurationError):
    """The database schema does not match this version of oms."""


class SchemaBehind(SchemaError):
    """The database has no oms schema, or an older one: run `oms db upgrade`."""

    def __init__(self, url: str, current: str | None, head: str) -> None:
        self.url, self.current, self.head = url, current, head
        found = "has no oms schema" if current is None else f"is at schema revision {current}, this oms needs {head}"
        super().__init__(f"the database at {url} {found}: run `oms db upgrade`")


class SchemaAhead(SchemaError):
    """The database schema is newer than this version of oms: upgrade oms."""

    def __init__(self, url: str, current: str, head: str) -> None:
        self.url, self.current, self.head = url, current, head
        super().__init__(f"the database at {url} is at schema revision {current}, unknown to this oms (its newest "
                         f"is {head}): a newer oms migrated it; upgrade oms")


class Conflict(OmsError):
    """Concurrent changes to the same thing kept colliding; nothing was changed, and trying again may succeed."""


class TaskNotFound(OmsError, LookupError):
    """No task has this id."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"unknown task {task_id!r}")


class TaskAlreadyFinished(OmsError):
    """The task is already done or failed; finishing it again changes nothing."""

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__(f"task {task_id!r} is already {status}: nothing was changed")


class TaskNotClaimed(OmsError):
    """The task has not been claimed by a worker, so it cannot be finished."""

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__(f"task {task_id!r} is {status}, not running: claim it with fetch_task first (a human "
                         "step: oms.claim)")


class NotLeaseHolder(OmsError):
    """The task is leased to another worker: only the worker holding a claim may finish or extend it."""

    def __init__(self, task_id: str, holder: str | None, caller: str) -> None:
        self.task_id, self.holder, self.caller = task_id, holder, caller
        super().__init__(f"task {task_id!r} is leased to worker {holder!r}, not {caller!r}: nothing was changed")


class InstanceFinished(OmsError):
    """The workflow instance has already ended; its steps can no longer change."""

    def __init__(self, instance_id: str, status: str) -> None:
        self.instance_id, self.status = instance_id, status
        super().__init__(f"workflow instance {instance_id!r} is {status}: nothing was changed")


class LeaseLost(TaskAlreadyFinished):
    """The worker's lease on the task ran out: the claim ended then, and the step is offered again."""

    def __init__(self, task_id: str) -> None:
        self.task_id, self.status = task_id, "lapsed"
        OmsError.__init__(
            self, f"lease on task {task_id!r} ran out, which ended the claim (the step is offered again): nothing "
            "was changed"
        )


class UnknownUser(OmsError, LookupError):
    """No person has this name (``oms user create``), or she is disabled."""

    def __init__(self, name: str, disabled: bool = False) -> None:
        self.name = name
        super().__init__(f"user {name!r} is disabled (`oms user enable {name}` gives her a new token)" if disabled else
                         f"unknown user {name!r}: create her with `oms user create {name} --groups ...`")


class NotAHumanStep(OmsError):
    """The task is not a human step's: no person claims, releases or reassigns it."""

    def __init__(self, task_id: str, kind: str) -> None:
        self.task_id, self.kind = task_id, kind
        super().__init__(f"task {task_id!r} is a {kind} step's, not a human step's: no person claims or reassigns it")


class NotAssigned(OmsError):
    """The human step is not assigned to this person or any of her groups."""

    def __init__(self, task_id: str, user: str) -> None:
        self.task_id, self.user = task_id, user
        super().__init__(f"task {task_id!r} is not assigned to {user!r} or to any of her groups: nothing was changed")


class TaskClaimed(OmsError):
    """Another person holds the human step: she must release it (or a supervisor reassign it) first."""

    def __init__(self, task_id: str, holder: str | None) -> None:
        self.task_id, self.holder = task_id, holder
        super().__init__(f"task {task_id!r} is claimed by {holder!r}: nothing was changed")


class UnknownSignal(InvalidArgument):
    """No step of the workflow waits for a signal of this name."""

    def __init__(self, workflow_id: str, name: str, known: list[str]) -> None:
        self.workflow_id, self.name = workflow_id, name
        awaited = ", ".join(repr(n) for n in known) or "none"
        super().__init__(f"no step of workflow {workflow_id!r} waits for signal {name!r} (it waits for: {awaited})")


class SignalRefused(OmsError):
    """The signal cannot be taken: its step is done already, or the same signal is already kept for it."""

    def __init__(self, instance_id: str, name: str, why: str) -> None:
        self.instance_id, self.name = instance_id, name
        super().__init__(f"signal {name!r} for instance {instance_id}: {why}; nothing was changed")


class UnknownBusinessKey(OmsError, LookupError):
    """No instance of this workflow has this business key."""

    def __init__(self, workflow_id: str, key: str) -> None:
        self.workflow_id, self.key = workflow_id, key
        super().__init__(f"no instance of workflow {workflow_id!r} has business key {key!r}")


class BusinessKeyInUse(OmsError):
    """A running instance of the workflow already has this business key."""

    def __init__(self, workflow_id: str, key: str, instance_id: str | None) -> None:
        self.workflow_id, self.key, self.instance_id = workflow_id, key, instance_id
        super().__init__(f"business key {key!r} of workflow {workflow_id!r} belongs to running instance "
                         f"{instance_id or '(just started)'}: nothing was started (signal it, or cancel it first)")


class BrokerUnavailable(OmsError):
    """The broker could not be reached; the step is recorded and the reconciler will publish it."""

    def __init__(self, url: str, instance_id: str, error: object) -> None:
        self.url, self.instance_id = url, instance_id
        super().__init__(
            f"cannot reach the broker at {url} ({error}); instance {instance_id} is recorded and its step "
            "will be published by the reconciler once the broker is back"
        )


def check_id(value: object, kind: str) -> str:
    """Refuse a malformed instance or task id before it reaches the database."""
    if not isinstance(value, str) or not _IDS[kind].fullmatch(value):
        example = "wf-9b2f…" if kind == "instance" else "tk-4c1a…"
        raise InvalidArgument(f"malformed {kind} id {value!r:.80}: expected '{example}' (a prefix and 32 hex digits)")
    return value


def describe(error: ValidationError) -> str:
    """A pydantic error as one line naming each culprit by its path (``steps[1].sla: ...``)."""
    lines = []
    for item in error.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":  # pydantic says "Extra inputs are not permitted"
            message = "unknown key (misspelt?)"
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)
