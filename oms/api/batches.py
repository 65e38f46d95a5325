"""Pull workers over HTTP, many steps per round trip: fetch a batch, complete or fail a batch.

The same long poll as a single fetch (:func:`oms.api.tasks.long_poll`: a claim made
as the caller went away is released), claiming up to ``max_tasks`` steps in one
statement; a batch of completions or failures is one transaction
(:func:`act.complete_tasks`), each task judged on its own: one the single route
would refuse (its lease lost, finished already, unknown, of a topic the token may
not work on: ``Forbidden``) is ``refused`` in the results with that error's name
and sentence, and the others go through. Who holds the tasks is decided as for the
single routes: the body's ``worker_id``, or a person herself. The routes are
``/v1/batches/…``: ``/v1/tasks/complete`` would be ``GET /v1/tasks/{task_id}``'s path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..engine import checks, door
from ..exceptions import OmsError
from ..model.forms import FormError
from ..model.task import Task, TaskOutcome
from .auth import Principal
from .bodies import JsonRoute
from .errors import ApiError, documented, sentence
from .params import OptionalWorkerId, Topic
from .tasks import HOLDER, Caller, FetchRequest, _holder, long_poll, task_json

router = APIRouter(prefix="/v1", tags=["pull workers"], route_class=JsonRoute)
#: The most tasks one request claims, completes or fails.
MAX_TASKS = 100


class FetchBatchRequest(FetchRequest):
    """A single fetch's fields, and how many steps to claim at once."""

    max_tasks: int = Field(10, ge=1, le=MAX_TASKS, description="Claim up to this many steps at once (1 to 100).")


class FetchBatchResponse(BaseModel):
    """What a batch fetch claimed."""

    tasks: list[Task] = Field(description="The steps claimed (at least one), each as a single fetch "
                                                    "returns it.")


class CompleteItem(BaseModel):
    """One task to complete, and its result."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    result: dict[str, Any] | None = Field(None, description="The step's result; a human step's must fit its form. "
                                        "A result the single route would refuse (a NUL in a key or a string, too "
                                        "large, too deep) refuses this task only, in the results.")


class FailItem(BaseModel):
    """One task to fail, and why."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    reason: Any = Field(..., description="What went wrong (non-empty text).")


class CompleteBatchRequest(BaseModel):
    """Tasks to complete in one transaction (1 to 100), all held by ``worker_id`` (shown required: a person's
    token may leave it out, as for a single completion)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"required": ["tasks", "worker_id"]})

    worker_id: OptionalWorkerId = HOLDER
    tasks: list[CompleteItem] = Field(..., min_length=1, max_length=MAX_TASKS)


class FailBatchRequest(BaseModel):
    """Tasks to fail in one transaction (1 to 100), all held by ``worker_id``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"required": ["tasks", "worker_id"]})

    worker_id: OptionalWorkerId = HOLDER
    tasks: list[FailItem] = Field(..., min_length=1, max_length=MAX_TASKS)


class TaskResult(BaseModel):
    """What became of one task of the batch."""

    task_id: str
    status: Literal["done", "failed", "refused"] = Field(
        description="done (completed), failed (its failure recorded), or refused: nothing changed.")
    repeat: bool | None = Field(None, description="Done or failed: true when the holder sent again how it had "
                                                  "finished the task (its answer was lost), which changed nothing.")
    error: str | None = Field(None, description="Why it was refused: the error the single route answers "
                                                "(`LeaseLost`, `TaskAlreadyFinished`, `TaskNotFound`, `Forbidden`…).")
    detail: str | None = Field(None, description="That error's sentence.")
    fields: dict[str, str] | None = Field(None, description="A result that does not fit its step's form "
                                                            "(`FormError`): each refused field's message.")


class BatchResponse(BaseModel):
    """What became of each task of a batch."""

    results: list[TaskResult] = Field(description="One per task of the request, in its order.")


@router.post("/topics/{topic}/fetch-batch", response_model=FetchBatchResponse,
             responses={204: {"description": "No step was offered within max_wait."}, **documented(401, 403, 422)})
async def fetch_tasks(topic: Topic, body: FetchBatchRequest, request: Request, who: Caller) -> Response:
    """Claim up to ``max_tasks`` steps on ``topic`` at once, waiting up to ``max_wait`` for the first: 200 with
    ``{"tasks": [...]}`` as soon as at least one is there, or 204."""
    found = await long_poll(topic, body, request, who, body.max_tasks)
    return JSONResponse({"tasks": [task_json(task) for task in found]}) if found else Response(status_code=204)


def _judged(who: Principal, worker_id: str | None, task_ids: Sequence[str],
            finish: Callable[[list[int], str], list[TaskOutcome]]) -> JSONResponse:
    """Decide who holds each task as the single routes do (a task the caller may not touch is refused here), let
    ``finish`` end the others (by their positions) in one transaction, and answer every task's result in order."""
    if not who.person and worker_id is None:
        raise ApiError(422, "InvalidRequest", "worker_id: Field required")
    holder = who.name if who.person else checks.check_worker_id(worker_id)
    results: list[dict[str, Any]] = [{"task_id": task_id} for task_id in task_ids]
    allowed: list[int] = []
    for n, task_id in enumerate(task_ids):
        try:
            _holder(task_id, who, worker_id)
            allowed.append(n)
        except ApiError as exc:
            results[n] |= {"status": "refused", "error": exc.error, "detail": exc.detail}
        except OmsError as exc:
            results[n] |= _result(TaskOutcome.refused(task_id, exc))
    for n, outcome in zip(allowed, finish(allowed, holder) if allowed else [], strict=True):
        results[n] |= _result(outcome)
    return JSONResponse({"results": results})


def _result(outcome: TaskOutcome) -> dict[str, Any]:
    """A task's entry in the results: its status, and the error the single route would answer."""
    if outcome.ok:
        return {"status": outcome.status, "repeat": outcome.repeat}
    more = {"fields": outcome.exception.fields} if isinstance(outcome.exception, FormError) else {}
    return {"status": "refused", "error": outcome.error, "detail": sentence(outcome.detail or "") or outcome.error,
            **more}


@router.post("/batches/complete", response_model=BatchResponse, responses=documented(401, 403, 422))
def complete_tasks(body: CompleteBatchRequest, who: Caller) -> JSONResponse:
    """Complete many fetched tasks (or human steps the caller holds) in one transaction: each ``done`` or
    ``refused`` with the error the single route would answer; the others go through."""
    items = body.tasks
    return _judged(who, body.worker_id, [item.task_id for item in items], lambda allowed, holder: door.complete_many(
        [(items[n].task_id, items[n].result) for n in allowed], worker_id=holder))


@router.post("/batches/fail", response_model=BatchResponse, responses=documented(401, 403, 422))
def fail_tasks(body: FailBatchRequest, who: Caller) -> JSONResponse:
    """Fail many fetched tasks (or human steps the caller holds) in one transaction, each with its ``reason``:
    each ``failed`` (retried per its step, or its instance failed) or ``refused``."""
    items = body.tasks
    return _judged(who, body.worker_id, [item.task_id for item in items], lambda allowed, holder: door.fail_many(
        [(items[n].task_id, items[n].reason) for n in allowed], worker_id=holder))
