"""Starting workflows and publishing steps: the write side of the public API."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from kombu import Producer
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.utils.url import maybe_sanitize_url

from .celery import app
from .compiler import compile_chain
from .config import check_fits_broker
from .db import sessions, transaction
from .definitions import cached_definition, load_definition
from .exceptions import BrokerUnavailable
from .jsonvalue import json_object
from .settings import get_settings
from .transitions import Dispatch, cancel, resume, start_instance


logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def publish(dispatch: Dispatch | None, producer: Producer | None = None) -> None:
    """Publish the chain a committed transition asked for (nothing for ``None``)."""
    if dispatch is None:
        return
    database = str(sessions().kw["bind"].url)
    workflow = cached_definition(database, dispatch.workflow_id, dispatch.version)
    if workflow is None:
        with transaction() as session:
            workflow, _ = load_definition(session, dispatch.workflow_id, dispatch.version)
    signature = compile_chain(app, workflow, dispatch.instance_id, dispatch.from_step)
    try:
        signature.apply_async(countdown=dispatch.countdown or None, producer=producer)
    except (KombuOperationalError, OSError) as exc:
        raise BrokerUnavailable(maybe_sanitize_url(app.conf.broker_url), dispatch.instance_id, exc) from None


def publish_all(dispatches: list[Dispatch]) -> None:
    """Publish each dispatch through one producer; one the broker refuses is left to the reconciler."""
    if not dispatches:
        return
    try:
        with app.producer_or_acquire() as producer:
            for dispatch in dispatches:
                try:
                    publish(dispatch, producer)
                except BrokerUnavailable as exc:
                    logger.warning("%s", exc)
    except (KombuOperationalError, OSError) as exc:
        logger.warning("cannot reach the broker at %s (%s); %d recorded step(s) are left to the reconciler",
                       maybe_sanitize_url(app.conf.broker_url), exc, len(dispatches))


def start_workflow(workflow_id: str, payload: dict[str, Any] | None = None) -> str:
    """Start the latest version of ``workflow_id`` with ``payload``; return the instance id.

    Raises:
        InvalidPayload: ``payload`` is not a JSON object, or is over ``OMS_MAX_PAYLOAD_BYTES``.
        UnknownWorkflow: no definition of ``workflow_id`` has been saved.
        BrokerUnavailable: the instance is recorded (its id is ``exc.instance_id``) but its
            first step could not be published; the reconciler will publish it.
    """
    data = json_object({} if payload is None else payload, what="payload", max_bytes=get_settings().max_payload_bytes)
    with transaction() as session:
        definition, version = load_definition(session, workflow_id)
        check_fits_broker(definition, get_settings())
        instance, dispatch = start_instance(session, definition, version, data, utcnow())
    publish(dispatch)
    return instance.id


def cancel_workflow(instance_id: str, reason: str = "cancelled by operator") -> None:
    """Cancel a pending or running instance (see :func:`oms.transitions.cancel`)."""
    with transaction() as session:
        cancel(session, instance_id, utcnow(), reason)


def retry_workflow(instance_id: str) -> None:
    """Resume a failed instance from its failed step."""
    with transaction() as session:
        dispatch = resume(session, instance_id, utcnow())
    publish(dispatch)
