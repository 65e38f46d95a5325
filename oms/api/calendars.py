"""Calendars over HTTP: save one (JSON or YAML), list them, read one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..catalog import Calendar, list_calendars
from ..model.calendars import CalendarDefinition, check_calendar_id
from .answers import CalendarSaved
from .errors import documented
from .params import CalendarId
from .workflows import SAVING, body_for, definition_body

router = APIRouter(prefix="/v1", tags=["calendars"])
_CALENDAR_BODY = definition_body(CalendarDefinition, {"timezone": "America/New_York",
                                                      "hours": {"mon-fri": "08:30-17:00"}, "holidays": "US"})


def _save(calendar_id: str, raw: bytes, media: str) -> CalendarSaved:
    check_calendar_id(calendar_id)
    return CalendarSaved(id=calendar_id, rescheduled=Calendar(**body_for(calendar_id, raw, media, "calendar")).save())


@router.put("/calendars/{calendar_id}", openapi_extra=_CALENDAR_BODY, responses=SAVING)
async def put_calendar(calendar_id: CalendarId, request: Request) -> CalendarSaved:
    """Save a calendar (JSON, or YAML with ``Content-Type: application/yaml``). Returns how many open steps'
    deadlines moved: ``{"id": ..., "rescheduled": n}``. Its ``id``, if given, is the path's; beyond its schema, 422
    ``InvalidDefinition`` names what is wrong (an unknown time zone or country, hours that do not parse)."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return await run_in_threadpool(_save, calendar_id, await request.body(), media)


# the calendars are sent as saved (``spec()``: without the defaults), and their model documents them
@router.get("/calendars", response_model=list[CalendarDefinition])
def get_calendars() -> JSONResponse:
    """Every saved calendar."""
    return JSONResponse([c.spec() for c in list_calendars()])


@router.get("/calendars/{calendar_id}", response_model=CalendarDefinition, responses=documented(404))
def get_calendar(calendar_id: CalendarId) -> JSONResponse:
    """One calendar, as saved."""
    return JSONResponse(Calendar.load(calendar_id).spec())
