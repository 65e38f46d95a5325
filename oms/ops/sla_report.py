"""The monthly SLA report (``oms report``, ``GET /v1/sla/report``), read from the rollups, never the event log.

Per workflow, step and calendar over whole UTC days ``[since, until)``: steps
finished and the share of them within their SLA, the breaches the scanner
recorded, p50/p90/p99 of queue wait, run time, total and time over the SLA (in
working time, read from log-spaced buckets: within :data:`PRECISION`), the time
over summed, and the ten worst finished with a link to the page's instance view;
the same for each workflow's own SLA (its instances, ``step_id`` ``None``). For the
page's charts: per ISO week and step the share within SLA and the p90 total, and
the breaches by hour of the working day.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from urllib.parse import quote

from pydantic import BaseModel
from sqlalchemy import select

from ..exceptions import InvalidArgument
from ..model.definitions import check_workflow_id
from ..store.db import transaction
from ..store.tables import SlaRollupRow
from . import histograms
from .sla_rollups import WORKFLOW, Tally, catch_up

#: A percentile in the report is within this fraction of the true value (or 1 ms of it).
PRECISION = histograms.PRECISION
#: The longest period one report may cover.
MAX_DAYS = 400
#: The percentiles of each figure.
FRACTIONS = {"p50_s": 0.5, "p90_s": 0.9, "p99_s": 0.99}
FIGURES = ("queue_wait", "run", "total", "over")


class Percentiles(BaseModel):
    """p50, p90 and p99 of one figure, in working seconds (``None``: nothing measured)."""

    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None


class WorstInstance(BaseModel):
    """One of the worst finished: by time over its SLA, then by its total."""

    instance_id: str
    business_key: str | None = None
    task_id: str | None = None
    finished_at: datetime
    total_s: float
    over_s: float
    #: The page's view of the instance (relative unless a base address was given).
    link: str


class ReportRow(BaseModel):
    """One workflow's step (``step_id`` ``None``: the workflow's own SLA) under one calendar."""

    workflow_id: str
    step_id: str | None
    #: The calendar its times are counted in (``None``: wall time).
    calendar_id: str | None
    #: ``worker``, ``human``, ``wait``, ``timer``; ``workflow`` for the workflow's own SLA.
    kind: str
    #: The longest SLA seen, in working seconds (``None``: no SLA).
    sla_s: float | None
    finished: int
    within_sla: int
    late: int
    #: ``within_sla / finished`` (``None``: none finished, or no SLA: a workflow without one of its own).
    share_within: float | None
    #: Breaches the scanner recorded whose deadline passed in the period, finished or not.
    breaches: int
    #: Time over the SLA, summed over the late ones, in working seconds.
    over_s: float
    queue_wait: Percentiles
    run: Percentiles
    total: Percentiles
    #: Of the late ones only.
    over: Percentiles
    #: Breaches by the local hour (its calendar's time zone; UTC without one) the deadline passed.
    breach_hours: dict[int, int]
    worst: list[WorstInstance]


class WeekPoint(BaseModel):
    """One step (or a workflow's own SLA) in one ISO week: for the page's charts."""

    week: date
    workflow_id: str
    step_id: str | None
    finished: int
    within_sla: int
    share_within: float | None
    total_p90_s: float | None
    sla_s: float | None


class SlaReport(BaseModel):
    """The report of a period: ``since`` to ``until`` (excluded), whole UTC days."""

    since: date
    until: date
    workflow: str | None
    #: Percentiles are within this fraction of the true values.
    precision: float
    rows: list[ReportRow]
    weeks: list[WeekPoint]
    #: Every row's breaches by local hour of the deadline, summed.
    breach_hours: dict[int, int]


def _percentiles(counts: dict[str, int]) -> Percentiles:
    return Percentiles(**{name: _round(histograms.percentile(counts, f)) for name, f in FRACTIONS.items()})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def link(instance_id: str, base_url: str = "") -> str:
    """The page's view of an instance (``page.js``'s route ``#/instances/ID``)."""
    return f"{base_url.rstrip('/')}/#/instances/{quote(instance_id, safe='')}"


def _hours(counts: dict[str, int]) -> dict[int, int]:
    return {int(hour): n for hour, n in sorted(counts.items(), key=lambda item: int(item[0])) if n}


def _row(key: tuple[str, str, str], found: Tally, base_url: str) -> ReportRow:
    workflow_id, step_id, calendar_id = key
    return ReportRow(
        workflow_id=workflow_id, step_id=step_id or None, calendar_id=calendar_id or None,
        kind=found.kind, sla_s=_round(found.sla_s), finished=found.finished, within_sla=found.within_sla,
        late=found.finished - found.within_sla, share_within=found.share, breaches=found.breaches,
        over_s=round(found.over_s, 3),
        **{figure: _percentiles(found.histograms.get(figure, {})) for figure in FIGURES},
        breach_hours=_hours(found.breach_hours),
        worst=[WorstInstance(**entry, link=link(entry["instance_id"], base_url)) for entry in found.worst])


def check_period(since: date, until: date) -> None:
    """Refuse a period that is empty, backwards or longer than :data:`MAX_DAYS`."""
    if until <= since:
        raise InvalidArgument(f"until ({until}) must be after since ({since}): the period is [since, until)")
    if (until - since).days > MAX_DAYS:
        raise InvalidArgument(f"a report covers at most {MAX_DAYS} days, not {(until - since).days}")


def sla_report(since: date, until: date, workflow: str | None = None, *, base_url: str = "") -> SlaReport:
    """The SLA report of the UTC days ``[since, until)``, after rolling up what the log holds that is new.

    Args:
        workflow: one workflow only (default: every workflow but the engine's own).
        base_url: the page's public address, for the instances' links (default: relative links).
    """
    check_period(since, until)
    if workflow:
        check_workflow_id(workflow)
    catch_up()
    query = select(SlaRollupRow).where(SlaRollupRow.day >= since, SlaRollupRow.day < until)
    if workflow:
        query = query.where(SlaRollupRow.workflow_id == workflow)
    rows: dict[tuple[str, str, str], Tally] = {}
    weeks: dict[tuple[date, str, str], Tally] = {}
    hours: dict[str, int] = defaultdict(int)
    with transaction() as session:
        for found in session.scalars(query):
            rows.setdefault((found.workflow_id, found.step_id, found.calendar_id), Tally(found.kind)).absorb(found)
            monday = found.day - timedelta(days=found.day.weekday())
            weeks.setdefault((monday, found.workflow_id, found.step_id), Tally(found.kind)).absorb(found)
            for hour, n in (found.breach_hours or {}).items():
                hours[hour] += n
    # the workflow's own row after its steps
    ordered = sorted(rows.items(), key=lambda item: (item[0][0], item[1].kind == WORKFLOW, item[0][1], item[0][2]))
    points = [WeekPoint(week=week, workflow_id=workflow_id, step_id=step_id or None, finished=s.finished,
                        within_sla=s.within_sla, share_within=s.share,
                        total_p90_s=_round(histograms.percentile(s.histograms.get("total", {}), 0.9)),
                        sla_s=_round(s.sla_s))
              for (week, workflow_id, step_id), s in sorted(weeks.items())]
    return SlaReport(since=since, until=until, workflow=workflow, precision=round(PRECISION, 4),
                     rows=[_row(key, found, base_url) for key, found in ordered], weeks=points,
                     breach_hours=_hours(hours))
