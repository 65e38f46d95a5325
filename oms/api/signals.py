"""Signals over HTTP: a portal says "the form was submitted", to an instance by its id or by its business key.

202 with the receipt when the signal is new (it ended its waiting step, or is kept
until that step is ready: ``task_id`` is then ``null``); 200 with the first
signal's receipt (``new: false``) when its ``idempotency_key`` was used before.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from ..engine import signals
from ..engine.signals import Receipt
from .bodies import JsonRoute
from .errors import documented
from .instances import check_size
from .params import KEY, InstanceId, JsonObject, SignalName, WorkflowId, field

router = APIRouter(prefix="/v1", tags=["signals"], route_class=JsonRoute)
#: What a signal route may answer besides its receipt.
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Receipt, "description": "Its idempotency_key was used before: the first signal's receipt."},
    **documented(404, 409),
}


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: JsonObject | None = Field(None, description="The waiting step's result (checked against its form).")
    idempotency_key: str | None = field(KEY, "The same key again: the first receipt, nothing changed.", None)


class KeyedSignalRequest(SignalRequest):
    business_key: str = field(KEY, "The instance's business key: the case's own name (F8700-12-42).")


def _answer(receipt: Receipt, response: Response) -> Receipt:
    if not receipt.new:
        response.status_code = 200
    return receipt


@router.post("/instances/{instance_id}/signals/{name}", status_code=202, responses=_RESPONSES)
def signal_instance(instance_id: InstanceId, name: SignalName, response: Response,
                    body: SignalRequest | None = None) -> Receipt:
    """Send the signal ``name`` to an instance: the step waiting for it is done, with ``data`` as its result.
    409 ``SignalRefused``: that step is done already, or the same signal is kept for it; ``InstanceFinished``.
    422 ``UnknownSignal``: no step of the workflow waits for ``name`` (its definition says which do)."""
    body = body or SignalRequest()
    check_size(body.data)
    return _answer(signals.signal(instance_id, name, body.data, idempotency_key=body.idempotency_key), response)


@router.post("/workflows/{workflow_id}/signals/{name}", status_code=202, responses=_RESPONSES)
def signal_by_key(workflow_id: WorkflowId, name: SignalName, body: KeyedSignalRequest, response: Response) -> Receipt:
    """Send the signal ``name`` to the unfinished instance of a workflow started with ``business_key``.
    404 ``UnknownBusinessKey``: no unfinished instance has it (409 ``InstanceFinished``: only an ended one).
    422 ``UnknownSignal``: no step of the workflow waits for ``name`` (its definition says which do)."""
    check_size(body.data)
    return _answer(signals.signal_by_key(workflow_id, body.business_key, name, body.data,
                                         idempotency_key=body.idempotency_key), response)
