"""Starting workflows: one instance, many at once, and (inside a caller's transaction) the engine's own."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from ..celery.dispatch import Dispatch, publish, publish_all
from ..durations import utcnow
from ..exceptions import BusinessKeyInUse, ConfigurationError, IdempotencyConflict, InvalidPayload
from ..model.definitions import Definition
from ..model.jsonvalue import json_object
from ..model.limits import check_fits_broker
from ..model.names import user_name
from ..settings import get_settings
from ..states import InstanceStatus, instance_event
from ..store import moves
from ..store.catalog import load_definition
from ..store.contract import KeyInUse
from ..store.db import Database, database, retrying
from ..store.events import event
from ..store.portable import insert_rows
from ..store.tables import InstanceRow
from .checks import check_key
from .progress import MapError, start_progress
from .rows import instance_row, queued_event, started_event, task_row

__all__ = ["start", "start_workflow", "start_workflows", "start_instances", "start_instance"]


def _latest(db: Database, workflow_id: str) -> tuple[Definition, int]:
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


def _rows(definition: Definition, version: int, payloads: list[dict[str, Any]], now: datetime,
          key: str | None = None, business_key: str | None = None,
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
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
                        current_step=progress.current_step, idempotency_key=key, business_key=business_key)
        events += [started_event(instance, now), *progress.events]
        if progress.steps_left == 0:  # every step a map over an empty list: done as it starts
            instance.update(moves.finished_row(InstanceStatus.DONE, now))
            events.append(event(instance_event(InstanceStatus.RUNNING, InstanceStatus.DONE), instance["id"], now))
        instances.append(instance)
        tasks += progress.offered
    return instances, tasks, events


#: Tries at starting the newest version while new versions keep being saved.
_START_ATTEMPTS = 5


def _start(workflow_id: str, payloads: list[dict[str, Any]], now: datetime,
           key: str | None = None, business_key: str | None = None) -> tuple[list[str], list[Dispatch]]:
    """Record one instance per payload, each with its first steps queued, in one statement.

    Returns the ids of the instances started, in order, and their first steps to
    publish; none when ``key`` started an instance before (see :func:`start`).
    """
    db = database()
    for _ in range(_START_ATTEMPTS):
        definition, version = _latest(db, workflow_id)
        instances, tasks, events = _rows(definition, version, payloads, now, key, business_key)
        try:
            started = db.store.start(workflow_id, version, instances, tasks, events)
        except KeyInUse:
            assert business_key is not None, "only a business key can be in use"
            raise BusinessKeyInUse(workflow_id, business_key, _running_with(db, workflow_id, business_key)) from None
        if started.latest != version:
            db.latest.pop(workflow_id, None)  # a newer version was saved: start that one
            continue
        if not started.inserted:
            return [], []
        return [i["id"] for i in instances], [
            Dispatch(t["instance_id"], workflow_id, version, t["step_index"], 0.0, t["item_index"]) for t in tasks
        ]
    raise ConfigurationError(f"workflow {workflow_id!r} kept getting new versions while starting; try again")


def _running_with(db: Database, workflow_id: str, business_key: str) -> str | None:
    """The unfinished instance of ``workflow_id`` that has ``business_key``, if any."""
    with db.reader.connect() as conn:
        return conn.scalar(moves.holder_of_key(workflow_id, business_key))


def _payload(payload: Any) -> dict[str, Any]:
    settings = get_settings()
    return json_object({} if payload is None else payload, what="payload", max_bytes=settings.max_payload_bytes,
                       max_depth=settings.max_payload_depth)


def start(workflow_id: str, payload: dict[str, Any] | None = None, *,
          idempotency_key: str | None = None, business_key: str | None = None) -> tuple[str, bool]:
    """Start an instance; return its id and whether this call created it.

    With an ``idempotency_key``, a retried call (the same workflow, key and payload)
    returns the instance the first one started, and starts nothing.

    Raises:
        IdempotencyConflict: the key started an instance of this workflow with another payload.
        BusinessKeyInUse: an unfinished instance of this workflow has ``business_key``.
    """
    user_name(workflow_id, "workflow id")
    data = _payload(payload)
    key = None if idempotency_key is None else check_key(idempotency_key)
    business = None if business_key is None else check_key(business_key, "business key")
    ids, dispatches = _start(workflow_id, [data], utcnow(), key, business)
    if not ids:
        assert key is not None
        found = retrying(partial(database().store.started_with, workflow_id, key), "reading a started instance")
        assert found is not None, "an idempotency key that inserted nothing started an instance"
        instance_id, stored = found
        if stored != data:
            raise IdempotencyConflict(workflow_id, key, instance_id)
        return instance_id, False
    if len(dispatches) == 1:
        publish(dispatches[0])  # its own error: the instance is recorded, the reconciler will publish
    else:
        publish_all(dispatches)  # the first steps of a graph, or a map's items, through one producer
    return ids[0], True


def start_workflow(workflow_id: str, payload: dict[str, Any] | None = None, *,
                   idempotency_key: str | None = None, business_key: str | None = None) -> str:
    """Start the latest version of ``workflow_id`` with ``payload``; return the instance id.

    ``idempotency_key``: a retried call with the same key and payload returns the
    instance the first call started instead of starting another (what a portal needs
    when its request timed out).

    ``business_key``: the case's own name (the form number a citizen quotes), to find the
    instance by (``oms list --key``) and signal it (:func:`oms.signal_by_key`). Unique among
    the workflow's unfinished instances: a second start with a key in use is refused
    (``BusinessKeyInUse``, naming the running instance); once that instance has ended, the
    key may start another.

    Raises:
        InvalidArgument: ``workflow_id`` cannot be a workflow id (or is the engine's).
        InvalidPayload: ``payload`` is not a JSON object, is over ``OMS_MAX_PAYLOAD_BYTES``, nested deeper
            than ``OMS_MAX_PAYLOAD_DEPTH`` or holds text that cannot be stored (NUL, lone surrogates).
        UnknownDefinition: no definition of ``workflow_id`` has been saved.
        IdempotencyConflict: ``idempotency_key`` already started an instance with another payload.
        BusinessKeyInUse: an unfinished instance of this workflow has ``business_key``; nothing was started.
        BrokerUnavailable: the instance is recorded (its id is ``exc.instance_id``) but its
            first step could not be published; the reconciler will publish it.
    """
    return start(workflow_id, payload, idempotency_key=idempotency_key, business_key=business_key)[0]


def start_workflows(workflow_id: str, payloads: list[dict[str, Any]]) -> list[str]:
    """Start one instance of ``workflow_id`` per payload, in one statement; return their ids in order.

    Every payload is checked before anything is stored. The first steps are published
    through one producer; one the broker refuses is published by the reconciler.

    Raises:
        InvalidPayload: a payload is not a JSON object (its position is named).
        UnknownDefinition: no definition of ``workflow_id`` has been saved.
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
    ids, dispatches = _start(workflow_id, checked, utcnow())
    publish_all(dispatches)
    return ids


def start_instances(session: Session, definition: Definition, version: int, payloads: list[dict[str, Any]],
                    now: datetime) -> list[Dispatch]:
    """Start one instance per payload with three bulk INSERTs, in the caller's transaction, with the clock passed
    in; nothing is published (the caller publishes the dispatches once committed).

    The scanner starts its escalations this way, in the transaction that records
    the breach, so an escalation exists exactly when its breach does.
    """
    instances = [instance_row(definition, version, payload, now) for payload in payloads]
    tasks = [task_row(i["id"], i["payload"], definition, 0, now) for i in instances]
    events = [started_event(i, now) for i in instances] + [queued_event(t, now) for t in tasks]
    insert_rows(session.connection(), instances, tasks, events)
    return [Dispatch(i["id"], definition.id, version, 0) for i in instances]


def start_instance(session: Session, definition: Definition, version: int, payload: dict[str, Any],
                   now: datetime) -> tuple[InstanceRow, Dispatch]:
    """Start one instance in the caller's transaction (see :func:`start_instances`)."""
    [dispatch] = start_instances(session, definition, version, [payload], now)
    instance = session.get(InstanceRow, dispatch.instance_id)
    assert instance is not None
    return instance, dispatch
