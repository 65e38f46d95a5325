"""A known month of work for the SLA report's tests: November 2026, run through the engine with the clock passed in.

Two workflows: ``permit`` under the calendar ``office`` (New York, Monday to Friday
09:00-17:00, closed on Thanksgiving), steps ``intake`` (2h) and ``review`` (4h), its own
SLA two business days; ``quick`` in wall time, one step ``check`` of 10 minutes, started
at any hour of any day. Waits and run times are drawn from a seeded generator, so some
steps finish late, some across the office's closing time; three permits started on
27 November are never taken (their intake breaches, open), one ``quick`` finishes in
October and one on 1 December (outside the month). One SLA scan at 4 December records
the breaches.

:func:`expected` then counts, from the event log and the task rows alone, with its own
working-time arithmetic (not the engine's), what the report must say.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from math import ceil
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from oms import Calendar, Workflow, scan_sla
from oms.engine import door
from oms.engine.starts import start_instance
from oms.store.catalog import load_definition
from oms.store.db import transaction
from oms.store.tables import EventRow, InstanceRow, TaskRow

SINCE, UNTIL = date(2026, 11, 1), date(2026, 12, 1)
SCAN_AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")
THANKSGIVING = date(2026, 11, 26)
OFFICE = {"id": "office", "timezone": "America/New_York", "hours": {"mon-fri": "09:00-17:00"},
          "closed": [THANKSGIVING.isoformat()]}
PERMIT = {"id": "permit", "calendar": "office", "sla": "2bd",
          "steps": [{"id": "intake", "sla": "2h"}, {"id": "review", "sla": "4h"}]}
QUICK = {"id": "quick", "steps": [{"id": "check", "sla": "10m"}]}


def _start(workflow: str, at: datetime, key: str | None = None) -> str:
    with transaction() as s:
        definition, version = load_definition(s, workflow)
        instance, _ = start_instance(s, definition, version, {}, at)
        instance.business_key = key
        return instance.id


def _step(instance_id: str, index: int, ready: datetime, wait: timedelta, run: timedelta) -> datetime:
    """Claim step ``index`` ``wait`` after ``ready``, complete it ``run`` later; return when it finished."""
    task = door.claim_step(instance_id, index, "w1", now=ready + wait)
    assert task is not None, (instance_id, index)
    door.extend(task.id, "1d", now=ready + wait)  # as a push worker's heartbeats keep its claim
    door.complete(task, None, now=ready + wait + run)
    return ready + wait + run


def build(days: int = 30, seed: int = 21) -> None:
    """Save the calendar and workflows and run the month (``days`` of November), then scan it at :data:`SCAN_AT`."""
    Calendar(**OFFICE).save()
    Workflow.model_validate(PERMIT).save()
    Workflow.model_validate(QUICK).save()
    draw = random.Random(seed)
    minutes = lambda lo, hi: timedelta(minutes=draw.randint(lo, hi))  # noqa: E731
    for offset in range(days):
        day = SINCE + timedelta(days=offset)
        if day.weekday() < 5 and day != THANKSGIVING:
            for n in range(2):  # two permits a working day, from 09:30 to 16:00 New York time
                local = datetime.combine(day, time(9, 30), NEW_YORK) + minutes(0, 390)
                started = local.astimezone(UTC)
                instance = _start("permit", started, f"P-{day:%m%d}-{n}")
                finished = _step(instance, 0, started, minutes(5, 60), minutes(10, 150))
                _step(instance, 1, finished, minutes(10, 200), minutes(30, 240))
        for _ in range(2):  # two quick checks a day, at any hour
            started = datetime.combine(day, time(0), UTC) + minutes(0, 1400)
            instance = _start("quick", started)
            _step(instance, 0, started, timedelta(seconds=draw.randint(5, 300)), timedelta(seconds=draw.randint(30, 720)))
    for n in range(3):  # taken by nobody: the intake breaches and stays open
        _start("permit", datetime(2026, 11, 27, 15, 0, tzinfo=UTC) + timedelta(minutes=n), f"P-open-{n}")
    outside = _start("quick", datetime(2026, 10, 30, 12, 0, tzinfo=UTC))
    _step(outside, 0, datetime(2026, 10, 30, 12, 0, tzinfo=UTC), timedelta(minutes=1), timedelta(minutes=30))
    december = datetime(2026, 11, 30, 23, 58, tzinfo=UTC)
    late_one = _start("quick", december)
    _step(late_one, 0, december, timedelta(minutes=1), timedelta(minutes=4))  # finishes on 1 December
    scan_sla(now=SCAN_AT)


# -- what the report must say, counted independently ------------------------------------------------------------


def office_seconds(start: datetime, end: datetime) -> float:
    """Working seconds of ``office`` in ``[start, end)``: its hours day by day, in New York time."""
    if end <= start:
        return 0.0
    total = 0.0
    day = start.astimezone(NEW_YORK).date() - timedelta(days=1)
    while datetime.combine(day, time(0), NEW_YORK) < end:
        if day.weekday() < 5 and day != THANKSGIVING:
            opens = datetime.combine(day, time(9), NEW_YORK)
            closes = datetime.combine(day, time(17), NEW_YORK)
            total += max(0.0, (min(closes, end) - max(opens, start)).total_seconds())
        day += timedelta(days=1)
    return total


def nearest_rank(values: list[float], fraction: float) -> float | None:
    """The value of rank ⌈fraction·n⌉ among the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, ceil(fraction * len(ordered) - 1e-9))) - 1]


@dataclass
class Expected:
    """One row of the report, counted from the log."""

    finished: int = 0
    within: int = 0
    breaches: int = 0
    over: float = 0.0
    figures: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: ``(over_s, total_s, instance_id)`` of each finished.
    finishes: list[tuple[float, float, str]] = field(default_factory=list)
    breach_hours: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def breach(self, deadline: datetime, zone: ZoneInfo | Any) -> None:
        """A breach the scanner recorded: counted if its deadline passed in the month."""
        if _in_month(deadline):
            self.breaches += 1
            self.breach_hours[deadline.astimezone(zone).hour] += 1

    def finish(self, instance_id: str, seconds: Any, *, start: datetime, at: datetime, deadline: datetime | None,
               started: datetime | None = None) -> None:
        """A step (or instance) done at ``at``: counted if that was in the month."""
        if not _in_month(at):
            return
        total = seconds(start, at)
        late = deadline is not None and at >= deadline
        over = seconds(deadline, at) if late else 0.0
        self.finished += 1
        self.within += not late
        self.over += over
        self.figures["total"].append(total)
        if started is not None:
            self.figures["queue_wait"].append(seconds(start, started))
            self.figures["run"].append(seconds(started, at))
        if over:
            self.figures["over"].append(over)
        self.finishes.append((over, total, instance_id))


def _in_month(moment: datetime) -> bool:
    return SINCE <= moment.astimezone(UTC).date() < UNTIL


def expected() -> dict[tuple[str, str | None], Expected]:
    """``(workflow, step or None for the workflow's own SLA) -> Expected``, from ``oms_events`` (and the rows they
    name, for the deadlines and times), for the days ``[SINCE, UNTIL)``."""
    found: dict[tuple[str, str | None], Expected] = defaultdict(Expected)
    with transaction() as s:
        tasks = {t.id: t for t in s.scalars(select(TaskRow))}
        instances = {i.id: i for i in s.scalars(select(InstanceRow))}
        events = list(s.scalars(select(EventRow).order_by(EventRow.id)))
    for event in events:
        instance = instances[event.instance_id]
        if instance.workflow_id not in ("permit", "quick"):
            continue
        calendar = instance.workflow_id == "permit"
        seconds = office_seconds if calendar else (lambda a, b: max((b - a).total_seconds(), 0.0))
        zone = NEW_YORK if calendar else UTC
        if event.kind in ("task.done", "task.sla_violated"):
            task = tasks[event.task_id]
            row = found[(instance.workflow_id, task.step_id)]
            if event.kind == "task.sla_violated":
                row.breach(task.expires_at, zone)
            else:
                assert event.at == task.finished_at
                row.finish(instance.id, seconds, start=task.ready_at, at=event.at, deadline=task.expires_at,
                           started=task.started_at)
        elif event.kind in ("workflow.done", "workflow.sla_violated"):
            row = found[(instance.workflow_id, None)]
            if event.kind == "workflow.sla_violated":
                assert instance.expires_at is not None
                row.breach(instance.expires_at, zone)
            else:
                row.finish(instance.id, seconds, start=instance.created_at, at=event.at, deadline=instance.expires_at)
    return dict(found)


def summary(rows: dict[tuple[str, str | None], Expected]) -> dict[str, Any]:
    """Steps finished, within SLA and breaches over every step (not the workflows' own rows)."""
    steps = [row for (_, step), row in rows.items() if step is not None]
    return {"finished": sum(r.finished for r in steps), "within": sum(r.within for r in steps),
            "breaches": sum(r.breaches for r in steps)}
