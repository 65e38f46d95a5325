"""Notices and channels over HTTP: what escalations sent and what failed; where they send (never a secret).

Reading them is for admins and readers (they name people and the agency's
channels: not a portal's or a worker's business); defining a channel is for admins.
A channel's secret goes in and never comes out: not in an answer, an error or a log.
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.concurrency import run_in_threadpool

from ..store import channels, outbox
from ..store.channels import Channel
from ..store.outbox import NoticeView
from .bodies import JsonRoute
from .errors import documented
from .params import FREE_NAME, Moment, field

router = APIRouter(prefix="/v1", tags=["notices"], route_class=JsonRoute)


class ChannelRequest(BaseModel):
    """A channel to define: a webhook (``webhook``, with a ``secret`` to sign its bodies) or an ``email`` address."""

    model_config = ConfigDict(extra="forbid")

    name: str = field(FREE_NAME, "Its name, as ladders' rungs name it (`oncall-pager`); not a target of its own "
                      "(`assignee`…).")
    webhook: str | None = Field(None, description="POST each notice as JSON to this https:// URL.")
    secret: SecretStr | None = Field(None, description="Signs a webhook's bodies (X-OMS-Signature); never returned.")
    email: str | None = Field(None, description="Send each notice by e-mail to this address.")


@router.get("/notices")
def get_notices(status: Literal["pending", "sent", "failed"] | None = None,
                since: Annotated[Moment | None, Query(description="Written at or after (ISO 8601; UTC unless "
                                                                    "it says otherwise).")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[NoticeView]:
    """The notices escalations wrote, newest first: to whom, about what, their status (``pending`` with its next
    attempt, ``sent`` with when, ``failed`` with the last error) and attempts."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return outbox.list_notices(status=status, since=since, limit=limit)


@router.get("/channels")
def get_channels() -> list[Channel]:
    """Every channel: kind, address (a webhook's scheme and host only), whether it signs, when disabled."""
    return channels.list_channels()


@router.post("/channels", status_code=201, responses=documented(409))
async def post_channel(body: ChannelRequest) -> Channel:
    """Define a channel; answers it as ``GET /v1/channels`` shows it (its secret never). 409 ``ChannelExists``.
    422 ``InvalidArgument``: not exactly one of ``webhook`` (an https:// URL) and ``email`` (an address), a
    ``secret`` without a webhook, or a name ladders keep for a target of their own (``assignee``)."""
    secret = body.secret.get_secret_value() if body.secret is not None else None
    return await run_in_threadpool(lambda: channels.create(body.name, webhook=body.webhook, email=body.email,
                                                           secret=secret))
