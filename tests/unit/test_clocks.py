"""Calendars and paused clocks with the clock passed in: deadlines stored at queueing, moved by pauses and
by calendar changes; a paused step neither warns nor breaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oms import Calendar, InvalidDefinition, Workflow, get_instance, history, scan_sla
from oms.catalog import list_calendars
from oms.engine import door
from oms.engine.door import Task
from oms.exceptions import LeaseLost, NotLeaseHolder, TaskAlreadyFinished, UnknownCalendar

from ..conftest import EPA, Backend
from .test_worktime import FEDERAL, ny

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
LEASE = timedelta(hours=1)

#: The seed's EPA registration, its inspector given two business days on the US federal calendar.
EPA_BD = {**EPA, "steps": [*EPA["steps"][:3], {"id": "assign_inspector", "sla": "2bd", "calendar": "us_federal"}]}


def _claim(topic: str, now: datetime, worker: str = "w1") -> Task:
    task, _ = door.claim_topic(topic, worker, LEASE, now=now)
    assert task is not None, f"nothing to claim on {topic}"
    return task


def _start(spec: dict[str, Any], now: datetime) -> str:
    from oms.engine.starts import start_instance
    from oms.store.catalog import load_definition
    from oms.store.db import transaction

    Workflow(**spec).save()
    with transaction() as s:
        definition, version = load_definition(s, spec["id"])
        return start_instance(s, definition, version, {"form_id": "F-1"}, now)[0].id


def _task(instance_id: str, step: str) -> Any:
    return next(t for t in get_instance(instance_id).tasks if t.step_id == step)


def test_the_epa_inspector_gets_two_business_days_across_thanksgiving_and_a_weekend(backend: Backend) -> None:
    assert FEDERAL.save() == 0
    start = ny(2026, 11, 25, 9, 50)  # Wednesday before Thanksgiving
    iid = _start(EPA_BD, start)
    now = start
    for step in ("collect_form", "validate_tax_id", "charge_fee"):
        now += 3 * timedelta(seconds=100)
        door.complete(_claim(step, now), {"ok": True}, now=now)
    queued = _task(iid, "assign_inspector")
    assert queued.ready_at == ny(2026, 11, 25, 10, 5)
    assert queued.expires_at == ny(2026, 11, 30, 10, 5)  # Thu holiday, Sat+Sun closed: Fri and Mon
    # 80% of its 16 working hours (Wed 6h55, Fri 8h, Mon 1h05): 12.8 h -> Friday 14:53
    assert queued.warn_at == ny(2026, 11, 27, 14, 53)
    assert queued.calendar_id == "us_federal"
    assert scan_sla(ny(2026, 11, 26, 23)).warnings == 0  # the holiday does not count
    assert scan_sla(ny(2026, 11, 27, 14, 54)).warnings == 1
    assert scan_sla(ny(2026, 11, 30, 10, 4)).violations == 0
    assert scan_sla(ny(2026, 11, 30, 10, 6)).violations == 1


def test_a_changed_calendar_moves_the_open_deadlines(backend: Backend) -> None:
    FEDERAL.save()
    iid = _start({"id": "w", "calendar": "us_federal", "sla": "3bd", "steps": [{"id": "inspect", "sla": "2bd"}]},
                 ny(2026, 11, 25, 10))
    assert _task(iid, "inspect").expires_at == ny(2026, 11, 30, 10)
    assert get_instance(iid).expires_at == ny(2026, 12, 1, 10)
    closed_friday = FEDERAL.model_copy(update={"closed": [datetime(2026, 11, 27).date()]})
    assert Calendar(**closed_friday.spec()).save() == 2  # the open step's clock and the instance's
    assert _task(iid, "inspect").expires_at == ny(2026, 12, 1, 10)
    assert get_instance(iid).expires_at == ny(2026, 12, 2, 10)
    assert Calendar(**closed_friday.spec()).save() == 0  # unchanged: nothing moves
    assert [c.id for c in list_calendars()] == ["us_federal"]


def test_a_workflow_naming_an_unsaved_calendar_is_refused(backend: Backend) -> None:
    with pytest.raises(InvalidDefinition, match="unknown calendar 'nowhere': save it first"):
        Workflow(id="w", calendar="nowhere", steps=[{"id": "a", "sla": "2bd"}]).save()
    with pytest.raises(UnknownCalendar, match="unknown calendar 'nowhere'"):
        Calendar.load("nowhere")


def test_a_paused_step_neither_warns_nor_breaches_and_its_deadline_moves_by_the_pause(backend: Backend) -> None:
    iid = _start({"id": "w", "steps": [{"id": "review", "sla": "10m"}]}, T0)
    task = _claim("review", T0 + M)
    assert door.pause(task.id, "waiting for citizen", now=T0 + 2 * M) is True
    assert door.pause(task.id, "again", now=T0 + 3 * M) is False  # paused already
    assert _task(iid, "review").light_now(T0 + 60 * M) == "green"  # read when it paused
    report = scan_sla(T0 + 60 * M)
    assert (report.warnings, report.violations) == (0, 0)
    clock = _task(iid, "review").clock(T0 + 60 * M)
    assert (clock.paused, clock.used_s, clock.paused_s, clock.left_s) == (True, 120.0, 3480.0, 480.0)
    assert door.resume_clock(task.id, now=T0 + 30 * M) is True
    assert door.resume_clock(task.id, now=T0 + 31 * M) is False
    resumed = _task(iid, "review")
    assert (resumed.expires_at, resumed.warn_at) == (T0 + 38 * M, T0 + 36 * M)  # 28 minutes paused
    assert scan_sla(T0 + 35 * M).warnings == 0
    assert scan_sla(T0 + 37 * M).warnings == 1
    kinds = [(e.kind, e.data.get("reason")) for e in history(iid) if "clock" in e.kind]
    assert kinds == [("task.clock_paused", "waiting for citizen"), ("task.clock_resumed", "waiting for citizen")]
    # parked: no holder, so someone else (the portal, a person) completes it
    door.complete(task.id, {"inspected": True}, worker_id="portal", now=T0 + 37 * M)
    assert get_instance(iid).status == "done"
    with pytest.raises(TaskAlreadyFinished):
        door.pause(task.id, "late", now=T0 + 40 * M)


def test_only_the_holder_pauses_a_claimed_step(backend: Backend) -> None:
    _start({"id": "w", "steps": [{"id": "review", "sla": "10m"}]}, T0)
    task = _claim("review", T0, worker="w1")
    with pytest.raises(NotLeaseHolder):
        door.pause(task.id, "not mine", worker_id="w2", now=T0 + M)


def test_max_pause_runs_the_clock_again_by_itself(backend: Backend) -> None:
    iid = _start({"id": "w", "max_pause": "5m", "steps": [{"id": "review", "sla": "10m"}]}, T0)
    task = _claim("review", T0)
    door.pause(task.id, "waiting for citizen", now=T0 + 2 * M)
    assert scan_sla(T0 + 6 * M).warnings == 0
    assert _task(iid, "review").paused_at is not None
    scan_sla(T0 + 7 * M + timedelta(seconds=1))  # the cap ran out at 7 minutes
    resumed = _task(iid, "review")
    assert resumed.paused_at is None and resumed.expires_at == T0 + 15 * M and resumed.paused_s == 300.0
    assert [e.data.get("capped") for e in history(iid) if e.kind == "task.clock_resumed"] == [True]
    assert scan_sla(T0 + 12 * M).warnings == 0
    assert scan_sla(T0 + 13 * M).warnings == 1
    door.pause(task.id, "again", now=T0 + 14 * M)  # nothing left of the cap: runs again at the next scan
    scan_sla(T0 + 14 * M)
    assert _task(iid, "review").paused_at is None
    assert scan_sla(T0 + 15 * M + timedelta(seconds=1)).violations == 1


def test_a_pause_under_a_calendar_moves_the_deadline_by_working_time(backend: Backend) -> None:
    FEDERAL.save()
    iid = _start({"id": "w", "steps": [{"id": "review", "sla": "4h", "calendar": "us_federal"}]},
                 ny(2026, 11, 20, 14))  # Friday 14:00: 3 h on Friday, 1 h on Monday
    assert _task(iid, "review").expires_at == ny(2026, 11, 23, 10)
    task = _claim("review", ny(2026, 11, 20, 15, 30))  # leased until 16:30: the holder pauses within its lease
    door.pause(task.id, "waiting for citizen", now=ny(2026, 11, 20, 16))  # 1 working hour paused on Friday,
    door.resume_clock(task.id, now=ny(2026, 11, 23, 9, 30))                     # 30 minutes on Monday
    assert _task(iid, "review").expires_at == ny(2026, 11, 23, 11, 30)
    assert _task(iid, "review").paused_s == 5400.0


def test_a_lapsed_claim_cannot_pause(backend: Backend) -> None:
    iid = _start({"id": "w", "steps": [{"id": "review", "sla": "4h"}]}, T0)
    task = _claim("review", T0)
    with pytest.raises(LeaseLost):
        door.pause(task.id, "waiting for citizen", worker_id="w1", now=T0 + LEASE + M)  # not swept yet
    assert _task(iid, "review").paused_at is None


def test_max_pause_counts_the_calendars_working_time(backend: Backend) -> None:
    FEDERAL.save()
    iid = _start({"id": "w", "max_pause": "8h", "steps": [{"id": "review", "sla": "2bd", "calendar": "us_federal"}]},
                 ny(2026, 11, 20, 14))
    task = _claim("review", ny(2026, 11, 20, 15, 30))
    door.pause(task.id, "waiting for citizen", now=ny(2026, 11, 20, 16))  # Friday 16:00: 1 h, then Monday
    scan_sla(ny(2026, 11, 21, 23, 59))  # 8 hours of wall time, 1 of working time: still paused
    assert _task(iid, "review").paused_at is not None
    scan_sla(ny(2026, 11, 23, 16, 1))  # Monday 16:00 ends 8 working hours (the calendar opens at 09:00)
    assert _task(iid, "review").paused_at is None
    assert _task(iid, "review").paused_s == 8 * 3600.0
