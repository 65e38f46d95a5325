"""Celery's side of tracked work (:func:`oms.track`): which task ids are tracked, and what a result is stored as.

A task of a tracked canvas carries the Celery id ``<instance_id>.<step index>``,
set by ``oms.track`` before the canvas is applied, so a signal receiver knows at
once, with no database access, whether a task is tracked and where it belongs. A
task tracked on its own (``@shared_task(sla=...)``) keeps the id Celery gave it,
recorded in its instance's payload under :data:`CELERY_ID`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from celery.result import AsyncResult

from .app import current

#: The payload key of a self-tracked task's instance that holds the Celery task id.
CELERY_ID = "celery_task_id"
#: The longest repr of a non-JSON result that is stored.
MAX_REPR = 1000

_TRACKED_ID = re.compile(r"(wf-[0-9a-f]{32})\.([0-9]{1,4})")


def tracked_id(instance_id: str, index: int) -> str:
    """The Celery task id of step ``index`` of a tracked canvas's instance."""
    return f"{instance_id}.{index}"


def parse_tracked_id(task_id: object) -> tuple[str, int] | None:
    """``(instance_id, step index)`` of a tracked canvas's task id; ``None`` for any other id."""
    if not isinstance(task_id, str) or not task_id.startswith("wf-"):
        return None
    found = _TRACKED_ID.fullmatch(task_id)
    return (found.group(1), int(found.group(2))) if found else None


def celery_id_of(instance_id: str, index: int, payload: dict[str, Any] | None) -> str:
    """The Celery id of a tracked step: a self-tracked task's own, else the canvas form."""
    own = (payload or {}).get(CELERY_ID)
    return own if isinstance(own, str) else tracked_id(instance_id, index)


def stored_result(value: Any) -> dict[str, Any] | None:
    """What a tracked step's result is stored as: ``{"value": v}`` for a JSON value, ``{"value": repr(v)}`` (at most
    :data:`MAX_REPR` characters) for anything else, nothing for ``None``."""
    if value is None:
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return {"value": repr(value)[:MAX_REPR]}
    return {"value": value}


def backend_outcome(celery_id: str) -> tuple[str, Any] | None:
    """``(state, result)`` the current app's result backend holds for a finished task (``SUCCESS``, ``FAILURE``,
    ``REVOKED``); ``None`` when the app has no result backend or the task has not finished there."""
    app = current()
    if not app.conf.result_backend:
        return None
    result = AsyncResult(celery_id, app=app)
    state = result.state
    if state not in ("SUCCESS", "FAILURE", "REVOKED"):
        return None
    return state, result.result
