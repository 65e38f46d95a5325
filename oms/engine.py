"""Starting, cancelling and resuming workflows: the write side of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .db import Database, database, retrying, transaction
from .definitions import Workflow, load_definition
from .dispatch import Dispatch, publish, publish_all
from .door import check_reason, utcnow
from .exceptions import ConfigurationError
from .jsonvalue import json_object
from .limits import check_fits_broker
from .names import user_name
from .rows import instance_row, queued_event, started_event, task_row
from .settings import get_settings
from .transitions import cancel, resume

__all__ = ["start_workflow", "start_workflows", "cancel_workflow", "retry_workflow", "utcnow"]


def _latest(db: Database, workflow_id: str) -> tuple[Workflow, int]:
    """The newest definition of ``workflow_id`` as this process last saw it (read once, then cached).

    The start statement checks that no newer version was saved since; if one was,
    the cache is dropped and the start built again.
    """
    version = db.latest.get(workflow_id)
    if version is not None and (definition := db.definitions.get((workflow_id, version))):
        return definition, version
    with db.sessions.begin() as session:
        definition, version = load_definition(session, workflow_id)
    check_fits_broker(definition)
    db.latest[workflow_id] = version
    return definition, version


#: Tries at starting the newest version while new versions keep being saved.
_START_ATTEMPTS = 5


def _start(workflow_id: str, payloads: list[dict[str, Any]], now: datetime) -> list[Dispatch]:
    """Record one instance per payload, each with its first step queued, in one statement."""
    db = database()
    for _ in range(_START_ATTEMPTS):
        definition, version = _latest(db, workflow_id)
        instances = [instance_row(definition, version, payload, now) for payload in payloads]
        tasks = [task_row(i["id"], i["payload"], definition, 0, now) for i in instances]
        events = [e for i, t in zip(instances, tasks, strict=True)
                  for e in (started_event(i, now), queued_event(t, now))]
        if db.store.start(workflow_id, version, instances, tasks, events):
            return [Dispatch(i["id"], workflow_id, version, 0) for i in instances]
        db.latest.pop(workflow_id, None)  # a newer version was saved: start that one
    raise ConfigurationError(f"workflow {workflow_id!r} kept getting new versions while starting; try again")


def _payload(payload: Any) -> dict[str, Any]:
    settings = get_settings()
    return json_object({} if payload is None else payload, what="payload", max_bytes=settings.max_payload_bytes,
                       max_depth=settings.max_payload_depth)


def start_workflow(workflow_id: str, payload: dict[str, Any] | None = None) -> str:
    """Start the latest version of ``workflow_id`` with ``payload``; return the instance id.

    Raises:
        InvalidArgument: ``workflow_id`` cannot be a workflow id (or is the engine's).
        InvalidPayload: ``payload`` is not a JSON object, is over ``OMS_MAX_PAYLOAD_BYTES``, nested deeper
            than ``OMS_MAX_PAYLOAD_DEPTH`` or holds text that cannot be stored (NUL, lone surrogates).
        UnknownWorkflow: no definition of ``workflow_id`` has been saved.
        BrokerUnavailable: the instance is recorded (its id is ``exc.instance_id``) but its
            first step could not be published; the reconciler will publish it.
    """
    user_name(workflow_id, "workflow id")
    [dispatch] = _start(workflow_id, [_payload(payload)], utcnow())
    publish(dispatch)
    return dispatch.instance_id


def start_workflows(workflow_id: str, payloads: list[dict[str, Any]]) -> list[str]:
    """Start one instance of ``workflow_id`` per payload, in one statement; return their ids in order.

    Every payload is checked before anything is stored. The first steps are published
    through one producer; one the broker refuses is published by the reconciler.

    Raises:
        InvalidPayload: a payload is not a JSON object (its position is named).
        UnknownWorkflow: no definition of ``workflow_id`` has been saved.
    """
    user_name(workflow_id, "workflow id")
    checked = []
    for position, payload in enumerate(payloads):
        try:
            checked.append(_payload(payload))
        except ValueError as exc:
            raise type(exc)(f"payloads[{position}]: {exc}") from None
    if not checked:
        return []
    dispatches = _start(workflow_id, checked, utcnow())
    publish_all(dispatches)
    return [d.instance_id for d in dispatches]


def cancel_workflow(instance_id: str, reason: str = "cancelled by operator") -> None:
    """Cancel a pending or running instance (see :func:`oms.transitions.cancel`)."""
    check_reason(reason, "a cancellation's reason")

    def work() -> None:
        with transaction() as session:
            cancel(session, instance_id, utcnow(), reason)

    retrying(work, "cancelling a workflow")


def retry_workflow(instance_id: str) -> None:
    """Resume a failed instance from its failed step."""

    def work() -> Dispatch:
        with transaction() as session:
            return resume(session, instance_id, utcnow())

    publish(retrying(work, "resuming a workflow"))
