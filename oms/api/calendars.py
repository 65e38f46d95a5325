"""Calendars over HTTP: save one (JSON or YAML), list them, read one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..catalog import Calendar, list_calendars
from ..model.calendars import check_calendar_id
from .workflows import _DEFINITION_BODY, body_for

router = APIRouter(prefix="/v1", tags=["calendars"])


def _save(calendar_id: str, raw: bytes, media: str) -> dict[str, Any]:
    check_calendar_id(calendar_id)
    return {"id": calendar_id, "rescheduled": Calendar(**body_for(calendar_id, raw, media, "calendar")).save()}


@router.put("/calendars/{calendar_id}", openapi_extra=_DEFINITION_BODY)
async def put_calendar(calendar_id: str, request: Request) -> dict[str, Any]:
    """Save a calendar (JSON, or YAML with ``Content-Type: application/yaml``). Returns how many open steps'
    deadlines moved: ``{"id": ..., "rescheduled": n}``."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return await run_in_threadpool(_save, calendar_id, await request.body(), media)


@router.get("/calendars")
def get_calendars() -> list[dict[str, Any]]:
    """Every saved calendar."""
    return [c.spec() for c in list_calendars()]


@router.get("/calendars/{calendar_id}")
def get_calendar(calendar_id: str) -> dict[str, Any]:
    """One calendar, as saved."""
    return Calendar.load(calendar_id).spec()
