"""People over HTTP: her inbox, one human step as she sees it, claim and release, a supervisor's reassign.

A person's token (``oms user create``) acts as herself: whose inbox, who claims,
who releases is her name, never one the request gives. An admin token reads an
inbox or a step as a person sees it by naming her (``?user=alice``). She completes
or fails a step through the pull workers' routes (:mod:`oms.api.tasks`).

Bodies are the engine's own (:meth:`oms.InboxItem.as_dict`): the operators' "My
work" page reads them as they are, so they are sent as made, and the models below
document them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..durations import utcnow
from ..engine import people
from ..exceptions import InvalidArgument
from ..reads.inbox import HumanTask, InboxItem, human_task, inbox
from ..store.candidates import candidates
from ..store.users import MAX_GROUPS, check_groups
from .auth import Principal, current
from .bodies import JsonRoute
from .errors import ApiError, documented
from .params import FREE_NAME, TaskId, field

router = APIRouter(prefix="/v1", tags=["people"], route_class=JsonRoute)
#: The caller, let in by :func:`~oms.api.auth.authorize` (its role by :data:`~oms.api.auth.RULES`).
Caller = Annotated[Principal, Depends(current)]


class InboxPage(BaseModel):
    """A person's inbox: the open human steps she may see, most urgent deadline first."""

    user: str
    now: datetime = Field(description="When it was read: each item's light and time_left_s are as of then.")
    items: list[InboxItem]


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, description="Why she gives it back (in the event log); default 'released'.")


class Released(BaseModel):
    task_id: str
    status: str = Field(description="`pending`: back in its candidates' queue, its SLA clock running on.")


class ReassignRequest(BaseModel):
    """The step's new candidates: a person (who then holds it), groups (whose queue it joins), or both (at least
    one of the two)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    user: str | None = field(FREE_NAME, "The person who takes it over (she holds it at once).", None)
    groups: list[str] | None = Field(None, description="The groups whose members may claim it.",
                                     json_schema_extra={"maxItems": MAX_GROUPS, "items": FREE_NAME})


class Reassigned(BaseModel):
    task_id: str
    claimed_by: str | None = Field(description="Who holds it now: the user it went to, else nobody (queued).")
    assign: dict[str, list[str]] = Field(description="Its candidates now: {'users': [...], 'groups': [...]}.")


def person_of(who: Principal, user: str | None) -> str:
    """Whose inbox or step a call reads: a person's own (403 if she names another); the one an admin names."""
    if who.person:
        if user is not None and user != who.name:
            raise ApiError(403, "Forbidden", f"a {who.role} token reads as {who.name!r} only, not as {user!r}")
        return who.name
    if user is None:
        raise InvalidArgument("an admin token reads as a person: name her with ?user=NAME")
    return user


def _step(task_id: str, user: str) -> JSONResponse:
    return JSONResponse(human_task(task_id, user).as_dict())


@router.get("/inbox", response_model=InboxPage, responses=documented(404))
def get_inbox(who: Caller, user: str | None = None) -> JSONResponse:
    """The open human steps the caller may see (an admin: ``?user=``'s), most urgent first; steps her groups'
    others hold are listed as taken (``actionable: false``). ``user`` is required of an admin token (422
    ``InvalidArgument`` without it); a person's token may only name herself."""
    name = person_of(who, user)
    now = utcnow()
    items = [item.as_dict() for item in inbox(name, now=now)]
    return JSONResponse({"user": name, "now": now.isoformat(), "items": items})


@router.get("/tasks/{task_id}", response_model=HumanTask, responses=documented(404, 409))
def get_task(task_id: TaskId, who: Caller, user: str | None = None) -> JSONResponse:
    """One open human step as the caller sees it (an admin: as ``?user=`` does), with the instance's payload,
    its earlier steps' results and its form. 403 ``NotAssigned``: not hers, nor her groups', to see. ``user`` is
    required of an admin token (422 ``InvalidArgument`` without it)."""
    return _step(task_id, person_of(who, user))


@router.post("/tasks/{task_id}/claim", response_model=HumanTask, responses=documented(404, 409))
def claim_task(task_id: TaskId, who: Caller) -> JSONResponse:
    """Claim a human step for the caller: the step as she now holds it. 409 ``TaskClaimed``: another person holds
    it; 403 ``NotAssigned``: it is not hers or her groups'. Claiming one she holds changes nothing."""
    people.claim(task_id, who.name)
    return _step(task_id, who.name)


@router.post("/tasks/{task_id}/release", responses=documented(404, 409))
def release_task(task_id: TaskId, who: Caller, body: ReleaseRequest | None = None) -> Released:
    """Give a step the caller holds back to its candidates' queue."""
    people.release(task_id, who.name, reason=(body or ReleaseRequest()).reason)
    return Released(task_id=task_id, status="pending")


@router.post("/tasks/{task_id}/reassign", responses=documented(404, 409))
def reassign_task(task_id: TaskId, body: ReassignRequest, who: Caller) -> Reassigned:
    """Give a human step new candidates (an admin token; or a supervisor of its groups, or named in them): a
    ``user``, who holds it at once, and/or ``groups``, whose queue it joins; its holder's claim ends."""
    # a supervisor must be among its candidates: checked by the engine under the step's lock
    people.reassign(task_id, user=body.user, groups=body.groups, by=who.name,
                    supervisor=None if who.role == "admin" else who.name)
    return Reassigned(task_id=task_id, claimed_by=body.user,
                      assign=candidates([body.user] if body.user else [], check_groups(body.groups or [])))
