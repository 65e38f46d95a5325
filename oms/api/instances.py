"""Instances over HTTP: start (idempotent with a key), list with a cursor, read, history, cancel, retry; SLA views."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from .. import reads as queries
from ..engine import control, starts
from ..exceptions import InvalidArgument, check_id
from ..reads import Event, InstanceSummary, StepSummary, TaskInfo
from ..settings import get_settings
from .answers import InstancePage, InstanceState, InstanceView, Started, TaskView
from .bodies import JsonRoute
from .errors import ApiError, documented
from .headers import IdempotencyKey
from .params import (
    KEY,
    REASON,
    AnyJsonObject,
    BusinessKeyFilter,
    InstanceId,
    LightFilter,
    Moment,
    StatusFilter,
    WorkflowFilter,
    WorkflowId,
    field,
)

router = APIRouter(prefix="/v1", tags=["instances"], route_class=JsonRoute)


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # {"form_id": …} without "payload" is refused, not started with {}

    payload: AnyJsonObject = Field(default_factory=dict, description="A JSON object every step can read: at most "
                                   "OMS_MAX_PAYLOAD_BYTES of JSON, OMS_MAX_PAYLOAD_DEPTH deep.")
    business_key: str | None = field(KEY, "The case's own name (the form number a citizen quotes): one unfinished "
                                     "instance of the workflow may have it; signals find it by it.", None)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Any = field(REASON, "Why it was cancelled (in its history).", "cancelled by operator")


def check_size(payload: Any) -> None:
    """413 for a payload over ``OMS_MAX_PAYLOAD_BYTES`` (the engine would refuse it as invalid, 422)."""
    limit = get_settings().max_payload_bytes
    try:
        size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError, RecursionError):
        return  # the engine names what is wrong with it
    if size > limit:
        raise ApiError(413, "PayloadTooLarge", f"the payload is {size} bytes of JSON, over the limit of {limit} "
                       "(OMS_MAX_PAYLOAD_BYTES)")


@router.post("/workflows/{workflow_id}/instances", status_code=201,
             responses={200: {"model": Started, "description": "The Idempotency-Key started this instance before."},
                        **documented(404, 409)})
def start_instance(workflow_id: WorkflowId, body: StartRequest, response: Response,
                   idempotency_key: IdempotencyKey) -> Started:
    """Start the latest version of a workflow: 201 ``{"instance_id": …}``; with a reused ``Idempotency-Key``
    and the same payload, 200 and the instance it started; with another payload, 409. 409 ``BusinessKeyInUse``
    names the unfinished instance that has the ``business_key``."""
    check_size(body.payload)
    instance_id, created = starts.start(workflow_id, body.payload, idempotency_key=idempotency_key,
                                        business_key=body.business_key)
    if not created:
        response.status_code = 200
    return Started(instance_id=instance_id)


def _cursor(summary: InstanceSummary) -> str:
    raw = json.dumps([summary.created_at.isoformat(), summary.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        moment, instance_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        found = datetime.fromisoformat(moment)
        check_id(instance_id, "instance")
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument(f"cursor {cursor[:40]!r} is not one this API returned") from None
    return (found if found.tzinfo else found.replace(tzinfo=UTC)), str(instance_id)


@router.get("/instances")
def list_instances(
    workflow: WorkflowFilter = None,
    status: StatusFilter = None,
    light: LightFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="A `next_cursor` this API returned.")] = None,
    business_key: BusinessKeyFilter = None,
    escalations: Annotated[bool, Query(description="false: leave out the engine's own escalation instances "
                                       "(oms.sla_violation, oms.sla_warning), unless `workflow` names one.")] = True,
) -> InstancePage:
    """Instances, newest first, filtered by workflow, status, worst light and business key; page with
    ``cursor``."""
    found = queries.list_instances(workflow, status, light, limit=limit + 1, before=_decode(cursor) if cursor else None,
                                   business_key=business_key, escalations=escalations)
    page = found[:limit]
    return InstancePage(instances=page, next_cursor=_cursor(page[-1]) if len(found) > limit else None)


def _task(task: TaskInfo, now: datetime) -> TaskView:
    return TaskView.model_validate({**task.model_dump(), "light": task.light_now(now),
                                    "queue_wait_s": task.queue_wait_s, "run_s": task.run_s, "total_s": task.total_s})


@router.get("/instances/{instance_id}", responses=documented(404))
def get_instance(instance_id: InstanceId) -> InstanceView:
    """Status, steps with their lights, each attempt with its timings, and the results."""
    info = queries.get_instance(instance_id)
    now = datetime.now(UTC)
    # ``light`` is the instance's own SLA; ``worst_light`` is what the list, `oms list` and `oms status` show
    return InstanceView.model_validate({**info.model_dump(), "worst_light": info.worst_light(now),
                                        "tasks": [_task(t, now) for t in info.tasks]})


@router.get("/instances/{instance_id}/history", responses=documented(404))
def get_history(instance_id: InstanceId) -> list[Event]:
    """The instance's event log, oldest first."""
    return queries.history(instance_id)


@router.post("/instances/{instance_id}/cancel", responses=documented(404, 409))
def cancel_instance(instance_id: InstanceId, body: CancelRequest | None = None) -> InstanceState:
    """Cancel a pending or running instance; its open steps can no longer be completed."""
    control.cancel_workflow(instance_id, (body or CancelRequest()).reason)
    return InstanceState(instance_id=instance_id, status=queries.get_instance(instance_id).status)


@router.post("/instances/{instance_id}/retry", responses=documented(404, 409))
def retry_instance(instance_id: InstanceId) -> InstanceState:
    """Run a failed instance again from what did not finish."""
    control.retry_workflow(instance_id)
    return InstanceState(instance_id=instance_id, status=queries.get_instance(instance_id).status)


@router.get("/overdue")
def overdue(limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[TaskView]:
    """Open steps whose light is red, most overdue first."""
    now = datetime.now(UTC)
    return [_task(t, now) for t in queries.overdue(limit)]


@router.get("/sla/summary")
def sla_summary(since: Annotated[Moment | None, Query(description="ISO 8601; UTC unless it says "
                                                                  "otherwise.")] = None) -> list[StepSummary]:
    """Per workflow and step: counts by light, p50/p95 queue wait and run time (``since``: ISO 8601)."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return queries.sla_summary(since)
