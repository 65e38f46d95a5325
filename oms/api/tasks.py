"""Pull workers over HTTP: fetch (a long poll), complete, fail, extend — the seed's loop for any language.

A fetch claims only while its caller is still connected; a claim made as the
caller went away is released at once (:func:`oms.door.release`), so a vanished
client never leaves a step leased to nobody. ``worker_id`` names the lease's
holder: the fetch's, or one the server makes up and returns in the task. A
person's token completes and fails the human steps she holds, as herself: her
name is the holder, and a ``worker_id`` naming anyone else is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..engine import checks, door
from ..exceptions import InvalidArgument
from ..model.task import Task
from ..reads.inbox import human_task
from ..states import StepKind
from .answers import Finished, LeaseExtended, Paused, Resumed
from .auth import Principal, current, require_topic
from .bodies import JsonRoute
from .errors import ApiError, documented
from .params import REASON, WORKER_ID, Duration, JsonObject, OptionalWorkerId, TaskId, Topic, duration, field

router = APIRouter(prefix="/v1", tags=["pull workers"], route_class=JsonRoute)
#: The caller, let in by :func:`~oms.api.auth.authorize` (its role by :data:`~oms.api.auth.RULES`).
Caller = Annotated[Principal, Depends(current)]
#: The longest a fetch may wait: proxies and load balancers cut idle requests after a minute or so.
MAX_WAIT_S = 300.0


class FetchRequest(BaseModel):
    """How long to wait for a step, how long to hold it, and who holds it."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field ("maxWait") is refused, not ignored

    max_wait: Duration = field(duration(MAX_WAIT_S), "How long to wait for a step: '10s', 2.5, 'PT1M'; at "
                                  "most 300 s (5m), in whichever form.", "10s")
    lease: Duration = field(duration(positive=True), "How long the claim lasts unless extended (more than 0, at most a "
                               "year).", "5m")
    worker_id: str | None = field(WORKER_ID, "The holder's name; the server makes one up if none is given.", None)


#: A finishing call's ``worker_id``: the lease's holder; a person's token is the holder herself.
HOLDER = Field(None, description="The lease's holder (required of worker and admin tokens); a person's token may "
                                 "leave it out: she is the holder.")


#: ``worker_id`` is required of worker and admin tokens, whom generated clients serve; a person's token may leave
#: it out (said in its description): the document shows it required.
class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"required": ["worker_id"]})

    result: JsonObject | None = Field(None, description="The step's result; a human step's must fit its form.")
    worker_id: OptionalWorkerId = HOLDER


class FailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"required": ["reason", "worker_id"]})

    reason: Any = field(REASON, "What went wrong (non-empty text, at most OMS_MAX_REASON_CHARS).")
    worker_id: OptionalWorkerId = HOLDER


class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease: Duration = field(duration(positive=True), "How long from now the claim lasts (more than 0, at most a "
                            "year).", "5m")
    worker_id: str = field(WORKER_ID, "The lease's holder.")


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Any = field(REASON, "Why the clock stops: 'waiting for citizen'.")
    worker_id: str = field(WORKER_ID, "The lease's holder.")


#: A task's fields, in order: what a worker receives.
_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))


def task_json(task: Task) -> dict[str, Any]:
    """A task as a worker receives it: every field, times in ISO 8601. Shallow (``asdict`` would deep-copy the
    payload and results, to be serialized at once)."""
    data = {name: getattr(task, name) for name in _TASK_FIELDS}
    for key in ("expires_at", "lease_expires_at"):
        if data[key] is not None:
            data[key] = data[key].isoformat()
    return data


class _Gone:
    """Set when the caller disconnects: the request's receive channel says ``http.disconnect``."""

    def __init__(self, request: Request) -> None:
        self.event = asyncio.Event()
        self._task = asyncio.ensure_future(self._watch(request))

    async def _watch(self, request: Request) -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                self.event.set()
                return

    def stop(self) -> None:
        self._task.cancel()


#: Releases started after their request was cancelled (kept until done, so they are not collected).
_releasing: set[asyncio.Future[None]] = set()


async def _release(task: Task, worker: str) -> None:
    await run_in_threadpool(door.release, task, worker)


async def _claim(topic: str, worker: str, lease: timedelta, max_tasks: int | None) -> tuple[list[Task], Any]:
    """One claim attempt (up to ``max_tasks`` steps; ``None``: the one-at-a-time claim); if this request is cancelled
    meanwhile, what it claimed is released."""

    def claim() -> tuple[list[Task], Any]:
        if max_tasks is None:
            task, due = door.claim_topic(topic, worker, lease)
            return ([] if task is None else [task]), due
        return door.claim_tasks(topic, worker, lease, max_tasks)

    attempt = asyncio.ensure_future(run_in_threadpool(claim))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        def give_back(done: asyncio.Future[tuple[list[Task], Any]]) -> None:
            if not done.cancelled() and done.exception() is None:
                for found in done.result()[0]:
                    releasing = asyncio.ensure_future(_release(found, worker))
                    _releasing.add(releasing)
                    releasing.add_done_callback(_releasing.discard)

        attempt.add_done_callback(give_back)
        raise


async def long_poll(topic: str, body: FetchRequest, request: Request, who: Principal,
                    max_tasks: int | None = None) -> list[Task]:
    """A fetch: claim on ``topic`` (up to ``max_tasks`` steps at once; ``None``: one), waiting up to the body's
    ``max_wait`` for the first; ``[]`` if none came, or if the caller left (what was claimed for it is released)."""
    checks.check_topic(topic)
    require_topic(who, topic)
    wait = checks.seconds(body.max_wait, "max_wait")
    if wait > MAX_WAIT_S:
        raise InvalidArgument(f"max_wait is {wait:g}s, over the limit of {MAX_WAIT_S:g}s: poll again instead")
    lease = timedelta(seconds=checks.seconds(body.lease, "lease", positive=True))
    worker = checks.check_worker_id(body.worker_id) if body.worker_id is not None else f"http-{secrets.token_hex(8)}"
    poll = door.LongPoll(wait)
    gone = _Gone(request)
    try:
        while not gone.event.is_set():
            found, due = await _claim(topic, worker, lease, max_tasks)
            if found:
                if gone.event.is_set():  # claimed as the caller left: nobody would receive them
                    for task in found:
                        await _release(task, worker)
                    break
                return found
            step = poll.wait(due)
            if step is None:
                break
            if await request.app.state.polls.wait(topic, step, gone.event) and gone.event.is_set():
                request.app.state.polls.pass_on(topic)
    finally:
        gone.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
    return []


@router.post("/topics/{topic}/fetch", response_model=Task,
             responses={204: {"description": "No step was offered within max_wait."}})
async def fetch_task(topic: Topic, body: FetchRequest, request: Request, who: Caller) -> Response:
    """Claim the next step on ``topic``, waiting up to ``max_wait``: 200 with the task, or 204. ``max_wait`` is at
    most 300 s and ``lease`` at most a year, in whichever form (422 ``InvalidArgument`` otherwise)."""
    found = await long_poll(topic, body, request, who)
    return JSONResponse(task_json(found[0])) if found else Response(status_code=204)


def _held(task_id: str, who: Principal) -> None:
    """403 unless the caller may work on the task's topic (404 for an unknown task)."""
    require_topic(who, door.lookup(task_id).topic)


def _holder(task_id: str, who: Principal, worker_id: str | None) -> str:
    """Who finishes the task: a person herself, on a human step she may see (else 403); for another caller, the
    body's ``worker_id`` (422 without one), on a topic it may work on."""
    if not who.person:
        if worker_id is None:
            raise ApiError(422, "InvalidRequest", "worker_id: Field required")
        _held(task_id, who)
        return checks.check_worker_id(worker_id)
    if worker_id is not None and worker_id != who.name:
        raise ApiError(403, "Forbidden", f"a {who.role} token acts as {who.name!r} only, not as {worker_id!r}")
    if door.lookup(task_id).topic != StepKind.HUMAN.topic:
        raise ApiError(403, "Forbidden", f"a {who.role} token works on human steps only: task {task_id} is not one")
    human_task(task_id, who.name)  # NotAssigned (403): not hers, nor her groups', to see
    return who.name


@router.post("/tasks/{task_id}/complete", responses=documented(404, 409))
def complete_task(task_id: TaskId, body: CompleteRequest, who: Caller) -> Finished:
    """Mark a fetched task (or a human step the caller holds) done, storing ``result``; only its holder may. A
    result that does not fit the step's form: 422 ``FormError`` with ``fields``, each refused field's message.
    ``worker_id`` is required of worker and admin tokens; a person's token may leave it out (she is the holder).
    The holder sending the same completion again (its answer was lost) gets 200 with ``"repeat": true`` and
    nothing changes; anyone else, or another result, 409 ``TaskAlreadyFinished``."""
    ended = door.complete(task_id, body.result, worker_id=_holder(task_id, who, body.worker_id))
    return Finished(status="done", repeat=ended.repeat)


@router.post("/tasks/{task_id}/fail", responses=documented(404, 409))
def fail_task(task_id: TaskId, body: FailRequest, who: Caller) -> Finished:
    """Mark a fetched task (or a human step the caller holds) failed with ``reason``: retried per its step, or
    the instance fails. The holder sending the same failure again gets 200 with ``"repeat": true``."""
    ended = door.fail(task_id, body.reason, worker_id=_holder(task_id, who, body.worker_id))
    return Finished(status="failed", repeat=ended.repeat)


@router.post("/tasks/{task_id}/extend", responses=documented(404, 409))
def extend_task(task_id: TaskId, body: ExtendRequest, who: Caller) -> LeaseExtended:
    """Keep a fetched task ``lease`` more from now; returns the new expiry."""
    _held(task_id, who)
    until = door.extend(task_id, body.lease, worker_id=checks.check_worker_id(body.worker_id))
    return LeaseExtended(lease_expires_at=until.isoformat())


@router.post("/tasks/{task_id}/pause", responses=documented(404, 409))
def pause_task(task_id: TaskId, body: PauseRequest, who: Caller) -> Paused:
    """Stop a fetched task's SLA clock (waiting on the citizen) and park it: it keeps no lease and no holder, so
    whoever resumes or completes it later may. ``{"paused": false}`` if it was paused already."""
    _held(task_id, who)
    return Paused(paused=door.pause(task_id, checks.check_reason(body.reason, "a pause's reason"),
                                    worker_id=checks.check_worker_id(body.worker_id)))


@router.post("/tasks/{task_id}/resume", responses=documented(404, 409))
def resume_task(task_id: TaskId, who: Caller) -> Resumed:
    """Run a paused task's clock again (a portal, on the citizen's answer); its deadline moves later by the time
    paused. ``{"resumed": false}`` if it was not paused."""
    if who.role == "worker":
        require_topic(who, door.lookup(task_id).topic)
    return Resumed(resumed=door.resume_clock(task_id))
