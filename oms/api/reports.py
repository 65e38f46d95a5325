"""``GET /v1/sla/report``: the monthly SLA report (:mod:`oms.ops.sla_report`), for the reading roles."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from ..ops.sla_report import SlaReport, sla_report

router = APIRouter(prefix="/v1", tags=["reads"])


@router.get("/sla/report")
def get_report(since: Annotated[date, Query(description="The first UTC day, YYYY-MM-DD.")],
               until: Annotated[date, Query(description="The UTC day after the last, YYYY-MM-DD (excluded).")],
               workflow: Annotated[str | None, Query(max_length=128, description="One workflow only.")] = None,
               ) -> SlaReport:
    """Per workflow, step and calendar: steps finished, the share within their SLA, breaches, p50/p90/p99 of
    queue wait, run time, total and time over (working time, from the rollups), the ten worst with a link to
    the page; each workflow's own SLA too; per week and by hour of the working day, for the charts. ``until``
    must be after ``since`` (else 422 ``InvalidArgument``)."""
    return sla_report(since, until, workflow or None)
