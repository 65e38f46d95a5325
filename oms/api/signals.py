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
from .errors import documented
from .instances import check_size

router = APIRouter(prefix="/v1", tags=["signals"])
#: What a signal route may answer besides its receipt.
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Receipt, "description": "Its idempotency_key was used before: the first signal's receipt."},
    **documented(401, 403, 404, 409, 422, form=True),
}


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] | None = Field(None, description="The waiting step's result (checked against its form).")
    idempotency_key: str | None = Field(None, description="The same key again: the first receipt, nothing changed.")


class KeyedSignalRequest(SignalRequest):
    business_key: str = Field(description="The instance's business key: the case's own name (F8700-12-42).")


def _answer(receipt: Receipt, response: Response) -> Receipt:
    if not receipt.new:
        response.status_code = 200
    return receipt


@router.post("/instances/{instance_id}/signals/{name}", status_code=202, responses=_RESPONSES)
def signal_instance(instance_id: str, name: str, response: Response, body: SignalRequest | None = None) -> Receipt:
    """Send the signal ``name`` to an instance: the step waiting for it is done, with ``data`` as its result.
    409 ``SignalRefused``: that step is done already, or the same signal is kept for it; ``InstanceFinished``."""
    body = body or SignalRequest()
    check_size(body.data)
    return _answer(signals.signal(instance_id, name, body.data, idempotency_key=body.idempotency_key), response)


@router.post("/workflows/{workflow_id}/signals/{name}", status_code=202, responses=_RESPONSES)
def signal_by_key(workflow_id: str, name: str, body: KeyedSignalRequest, response: Response) -> Receipt:
    """Send the signal ``name`` to the unfinished instance of a workflow started with ``business_key``.
    404 ``UnknownBusinessKey``: no unfinished instance has it (409 ``InstanceFinished``: only an ended one)."""
    check_size(body.data)
    return _answer(signals.signal_by_key(workflow_id, body.business_key, name, body.data,
                                         idempotency_key=body.idempotency_key), response)
