"""Starting, cancelling and resuming workflows: the write side of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .advance import MapError, start_progress
from .db import Database, database, retrying, transaction
from .definitions import Workflow, load_definition
from .dispatch import Dispatch, publish, publish_all
from .door import utcnow
from .exceptions import ConfigurationError, InvalidPayload
from .jsonvalue import json_object
from .limits import check_fits_broker
from .rows import event, instance_row, started_event
from .settings import get_settings
from .states import InstanceStatus, instance_event
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


def _rows(definition: Workflow, version: int, payloads: list[dict[str, Any]],
          now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """New instances with their first steps queued (mapped ones expanded from the payload), and the events.

    Raises the payload's error, naming its position when there are several: a mapped
    step's list missing from it, or over ``OMS_MAX_MAP_ITEMS``.
    """
    instances, tasks, events = [], [], []
    for position, payload in enumerate(payloads):
        instance = instance_row(definition, version, payload, now)
        try:
            progress = start_progress(definition, instance, now)
        except MapError as exc:
            error = exc.cause or InvalidPayload(f"payload: {exc}")
            if len(payloads) > 1:
                error.args = (f"payloads[{position}]: {error}",)
            raise error from None
        instance.update(results=progress.results, waiting=progress.waiting, steps_left=progress.steps_left,
                        current_step=progress.current_step)
        events += [started_event(instance, now), *progress.events]
        if progress.steps_left == 0:  # every step a map over an empty list: done as it starts
            instance.update(status=InstanceStatus.DONE.value, finished_at=now, sla_check_at=None)
            events.append(event(instance_event(InstanceStatus.RUNNING, InstanceStatus.DONE), instance["id"], now))
        instances.append(instance)
        tasks += progress.offered
    return instances, tasks, events


def _start(workflow_id: str, payloads: list[dict[str, Any]], now: datetime) -> tuple[list[str], list[Dispatch]]:
    """Record one instance per payload, each with its first steps queued, in one statement.

    Returns the instances' ids, in order, and their first steps to publish.
    """
    db = database()
    for _ in range(_START_ATTEMPTS):
        definition, version = _latest(db, workflow_id)
        instances, tasks, events = _rows(definition, version, payloads, now)
        if db.store.start(workflow_id, version, instances, tasks, events):
            return [i["id"] for i in instances], [
                Dispatch(t["instance_id"], workflow_id, version, t["step_index"], 0.0, t["item_index"]) for t in tasks
            ]
        db.latest.pop(workflow_id, None)  # a newer version was saved: start that one
    raise ConfigurationError(f"workflow {workflow_id!r} kept getting new versions while starting; try again")


def _payload(payload: Any) -> dict[str, Any]:
    return json_object({} if payload is None else payload, what="payload",
                       max_bytes=get_settings().max_payload_bytes)


def start_workflow(workflow_id: str, payload: dict[str, Any] | None = None) -> str:
    """Start the latest version of ``workflow_id`` with ``payload``; return the instance id.

    Raises:
        InvalidPayload: ``payload`` is not a JSON object, or is over ``OMS_MAX_PAYLOAD_BYTES``.
        UnknownWorkflow: no definition of ``workflow_id`` has been saved.
        BrokerUnavailable: the instance is recorded (its id is ``exc.instance_id``) but its
            first step could not be published; the reconciler will publish it.
    """
    [instance_id], dispatches = _start(workflow_id, [_payload(payload)], utcnow())
    if len(dispatches) == 1:
        publish(dispatches[0])  # its own error: the instance is recorded, the reconciler will publish
    else:
        publish_all(dispatches)  # the first steps of a graph, or a map's items, through one producer
    return instance_id


def start_workflows(workflow_id: str, payloads: list[dict[str, Any]]) -> list[str]:
    """Start one instance of ``workflow_id`` per payload, in one statement; return their ids in order.

    Every payload is checked before anything is stored. The first steps are published
    through one producer; one the broker refuses is published by the reconciler.

    Raises:
        InvalidPayload: a payload is not a JSON object (its position is named).
        UnknownWorkflow: no definition of ``workflow_id`` has been saved.
    """
    checked = []
    for position, payload in enumerate(payloads):
        try:
            checked.append(_payload(payload))
        except ValueError as exc:
            raise type(exc)(f"payloads[{position}]: {exc}") from None
    if not checked:
        return []
    ids, dispatches = _start(workflow_id, checked, utcnow())
    publish_all(dispatches)
    return ids


def cancel_workflow(instance_id: str, reason: str = "cancelled by operator") -> None:
    """Cancel a pending or running instance (see :func:`oms.transitions.cancel`)."""

    def work() -> None:
        with transaction() as session:
            cancel(session, instance_id, utcnow(), reason)

    retrying(work, "cancelling a workflow")


def retry_workflow(instance_id: str) -> None:
    """Resume a failed instance from its failed step."""

    def work() -> list[Dispatch]:
        with transaction() as session:
            return resume(session, instance_id, utcnow())

    publish_all(retrying(work, "resuming a workflow"))
