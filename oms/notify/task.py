"""The task that sends the outbox, and asking for it now rather than at the next sweep."""

from __future__ import annotations

import logging

from ..celery.app import current
from ..settings import ENGINE_QUEUE

logger = logging.getLogger(__name__)

#: The Celery task that sends due notices (registered by :mod:`oms.ops.tasks`, sent by beat and by :func:`kick`).
TASK = "oms.send_notices"


def kick() -> None:
    """Ask a worker on the ``oms`` queue to send due notices now. Call it after the commit that wrote them
    (:func:`oms.store.notices.add`); it never raises: when the broker cannot be reached, beat's next sweep
    (every ``OMS_NOTICE_INTERVAL``) sends them."""
    app = current()
    try:
        app.send_task(TASK, queue=ENGINE_QUEUE, retry=False, ignore_result=True)
    except Exception as exc:  # whatever the transport raises (redis' errors are not kombu's): the caller committed
        logger.warning("could not ask for notices to be sent now (%s); the next sweep sends them",
                       type(exc).__name__)
