"""The SLA scanner with the clock passed in: lights, events once, escalations, breach policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from oms import Workflow, get_instance, history, overdue, scan_sla, sla_summary
from oms.engine import door
from oms.engine.starts import start_instance
from oms.store.catalog import load_definition
from oms.store.db import database, transaction
from oms.store.tables import DefinitionRow, InstanceRow, TaskRow

from ..conftest import Backend

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def _start(steps: list[dict[str, Any]], sla: str | None = None, now: datetime = T0) -> str:
    spec: dict[str, Any] = {"id": "w", "steps": steps}
    if sla:
        spec["sla"] = sla
    Workflow(**spec).save()
    with transaction() as s:
        definition, version = load_definition(s, "w")
        instance, _ = start_instance(s, definition, version, {"form_id": "F-1"}, now)
    return instance.id


def _kinds(instance_id: str) -> list[str]:
    return [e.kind for e in history(instance_id) if "sla" in e.kind]


def _escalations(action: str) -> list[dict[str, Any]]:
    with transaction() as s:
        rows = s.scalars(select(InstanceRow).where(InstanceRow.workflow_id == f"oms.{action}")
                         .order_by(InstanceRow.created_at)).all()
        return [r.payload for r in rows]


def _task(instance_id: str) -> TaskRow:
    with transaction() as s:
        return s.scalars(select(TaskRow).where(TaskRow.instance_id == instance_id)
                         .order_by(TaskRow.created_at.desc(), TaskRow.attempt.desc())).first()  # type: ignore[return-value]


def test_green_then_yellow_then_red_each_recorded_and_escalated_once(backend: Backend) -> None:
    iid = _start([{"id": "collect_form", "sla": "5m"}])
    assert scan_sla(T0 + 3 * M).warnings == 0 and _task(iid).light == "green"
    report = scan_sla(T0 + 4 * M)  # 80% of 5m
    assert (report.warnings, report.violations, len(report.escalations)) == (1, 0, 1)
    assert _task(iid).light == "yellow"
    assert scan_sla(T0 + 4 * M + 30 * S).warnings == 0  # idempotent on re-scan
    report = scan_sla(T0 + 5 * M + 2 * S)
    assert (report.warnings, report.violations) == (0, 1)
    assert scan_sla(T0 + 9 * M).violations == 0
    assert _kinds(iid) == ["task.sla_warning", "task.sla_violated"]
    assert _task(iid).light == "red"
    [warning] = _escalations("sla_warning")
    [violation] = _escalations("sla_violation")
    assert warning["action"] == "sla_warning" and warning["step"] == "collect_form"
    assert violation == {
        "action": "sla_violation", "task_id": _task(iid).id, "instance_id": iid, "workflow": "w",
        "step": "collect_form", "topic": "collect_form", "attempt": 1, "status": "pending",
        "warn_at": (T0 + 4 * M).isoformat(), "expires_at": (T0 + 5 * M).isoformat(), "overdue_by_s": 2.0,
    }
    # the escalation is itself a step offered on the sla_violation topic
    with transaction() as s:
        topics = set(s.scalars(select(TaskRow.topic).where(TaskRow.workflow_id.startswith("oms."))))
    assert topics == {"sla_violation", "sla_warning"}
    assert [t.id for t in overdue()] == [_task(iid).id]


def test_a_step_found_already_late_is_a_breach_without_a_warning(backend: Backend) -> None:
    iid = _start([{"id": "s", "sla": "1m"}])
    report = scan_sla(T0 + 10 * M)
    assert (report.warnings, report.violations) == (0, 1)
    assert _kinds(iid) == ["task.sla_violated"]


def test_clock_starts_when_the_step_is_queued_not_when_the_instance_started(backend: Backend) -> None:
    iid = _start([{"id": "a", "sla": "10m"}, {"id": "b", "sla": "1m"}])
    task = door.claim_step(iid, 0, "w1", now=T0 + 5 * M)
    assert task is not None
    door.extend(task.id, "1h", now=T0 + 5 * M)  # as the worker's heartbeats would
    door.complete(task, None, now=T0 + 7 * M)  # green when done: a's light never needs scanning again
    assert scan_sla(T0 + 7 * M + 30 * S).violations == 0
    assert scan_sla(T0 + 8 * M + 1 * S).violations == 1  # b was queued at 7m with a 1m SLA
    info = get_instance(iid)
    assert [t.light for t in info.tasks] == ["green", "red"]
    assert info.tasks[0].queue_wait_s == 300 and info.tasks[0].run_s == 120 and info.tasks[0].total_s == 420


def test_a_step_finished_late_before_the_scan_is_still_a_breach(backend: Backend) -> None:
    iid = _start([{"id": "s", "sla": "1m"}])
    task = door.claim_step(iid, 0, "w1", now=T0)
    assert task is not None
    door.extend(task.id, "1h", now=T0)  # as the worker's heartbeats would
    door.complete(task, None, now=T0 + 2 * M)
    report = scan_sla(T0 + 3 * M)
    assert (report.warnings, report.violations) == (0, 1)
    assert get_instance(iid).status == "done"  # policies apply only to open steps
    assert overdue() == []


def test_warn_at_and_warn_fraction_set_the_yellow_light(backend: Backend) -> None:
    iid = _start([{"id": "a", "sla": "10m", "warn_at": "1m"}])
    assert scan_sla(T0 + 1 * M).warnings == 1
    with pytest.raises(Exception, match="warn_at .* must be shorter than the sla"):
        Workflow(id="x", steps=[{"id": "a", "sla": "1m", "warn_at": "2m"}])
    iid2 = _start([{"id": "b", "sla": "10m", "warn_fraction": 0.5}], now=T0 + 2 * M)
    assert scan_sla(T0 + 6 * M).warnings == 0
    assert scan_sla(T0 + 7 * M).warnings == 1
    assert _kinds(iid) == ["task.sla_warning"] and _kinds(iid2) == ["task.sla_warning"]


def test_workflow_level_deadline_has_its_own_lights(backend: Backend) -> None:
    iid = _start([{"id": "a", "sla": "1h"}], sla="10m")
    assert scan_sla(T0 + 8 * M).warnings == 1
    assert scan_sla(T0 + 10 * M).violations == 1
    assert scan_sla(T0 + 11 * M).violations == 0
    assert _kinds(iid) == ["workflow.sla_warning", "workflow.sla_violated"]
    info = get_instance(iid)
    assert info.light == "red" and info.tasks[0].light == "green"
    assert _escalations("sla_violation")[0]["task_id"] is None


@pytest.mark.parametrize(
    ("policy", "retries", "status", "attempts"),
    [("escalate", 0, "running", 1), ("fail", 3, "failed", 1), ("retry", 1, "running", 2), ("retry", 0, "failed", 1)],
)
def test_breach_policies(backend: Backend, policy: str, retries: int, status: str, attempts: int) -> None:
    iid = _start([{"id": "s", "sla": "1m", "on_breach": policy, "retries": retries}])
    scan_sla(T0 + 2 * M)
    info = get_instance(iid)
    assert info.status == status and len(info.tasks) == attempts
    if policy == "retry" and retries:
        fresh = info.tasks[-1]
        assert fresh.status == "pending" and fresh.expires_at == T0 + 3 * M and fresh.light == "green"
        assert [e.kind for e in history(iid)][-3:] == ["task.sla_violated", "task.failed", "task.retried"]
    if status == "failed":
        assert "SLA breached" in (info.error or "")


def test_a_burst_of_breaches_is_escalated_once_each_across_batches(backend: Backend) -> None:
    lenient = [_start([{"id": "s", "sla": "1m"}]) for _ in range(7)]
    Workflow(id="strict", steps=[{"id": "s", "sla": "1m", "on_breach": "fail"}]).save()
    with transaction() as s:
        definition, version = load_definition(s, "strict")
        strict, _ = start_instance(s, definition, version, {}, T0)
    report = scan_sla(T0 + 2 * M, batch=3)  # three transactions, the escalations inserted in bulk
    assert (report.violations, len(set(report.escalations))) == (8, 8)
    assert sorted(p["instance_id"] for p in _escalations("sla_violation")) == sorted([*lenient, strict.id])
    for escalation in report.escalations:  # each one a whole instance, as if started by start_workflow
        info = get_instance(escalation)
        assert info.status == "running" and [(t.status, t.topic) for t in info.tasks] == [("pending", "sla_violation")]
        assert [e.kind for e in history(escalation)] == ["workflow.started", "task.queued"]
    assert get_instance(strict.id).status == "failed" and {get_instance(i).status for i in lenient} == {"running"}
    assert [e.kind for e in history(strict.id)][-3:] == ["task.sla_violated", "task.failed", "workflow.failed"]
    assert scan_sla(T0 + 3 * M, batch=3).violations == 0


def test_sla_summary_counts_lights_and_timings(backend: Backend) -> None:
    for n in range(3):
        iid = _start([{"id": "s", "sla": "1m"}], now=T0 + n * S)
        task = door.claim_step(iid, 0, "w1", now=T0 + (n + 10) * S)
        assert task is not None
        door.complete(task, None, now=T0 + (n + 10) * S + 20 * S)
    _start([{"id": "s", "sla": "1m"}])
    scan_sla(T0 + 5 * M)
    [summary] = sla_summary()
    assert (summary.workflow_id, summary.step_id) == ("w", "s")
    assert (summary.green, summary.yellow, summary.red) == (3, 0, 1)
    assert summary.queue_wait_p50_s == 10 and summary.run_p95_s == 20


def _corrupt(workflow_id: str) -> None:
    """Break a stored definition (as a hand edit, or a row another version wrote, might) and forget the parsed one."""
    with transaction() as s:
        s.execute(update(DefinitionRow).where(DefinitionRow.workflow_id == workflow_id)
                  .values(spec={"id": workflow_id, "steps": "not a list"}))
    database().definitions.clear()


def test_a_row_that_fails_is_recorded_and_never_stops_the_scan(backend: Backend) -> None:
    """Regression (issue 12, 4.1): one bad row raised out of scan_sla, and no later scan got past it."""
    good = _start([{"id": "s", "sla": "1m"}])
    Workflow(id="broken", steps=[{"id": "s", "sla": "1m", "on_breach": "fail"}], sla="2m").save()
    with transaction() as s:
        definition, version = load_definition(s, "broken")
        bad, _ = start_instance(s, definition, version, {}, T0)
    _corrupt("broken")

    report = scan_sla(T0 + 2 * M)
    assert (report.violations, report.errors) == (1, 2)  # the good step; the broken step and instance
    assert _kinds(good) == ["task.sla_violated"] and _task(good).light == "red"
    assert [p["instance_id"] for p in _escalations("sla_violation")] == [good]
    failed = [e for e in history(bad.id) if e.kind.endswith("scan_failed")]
    assert [e.kind for e in failed] == ["task.scan_failed", "workflow.scan_failed"]
    assert all("InvalidDefinition" in e.data["error"] for e in failed)
    assert _task(bad.id).sla_check_at == T0 + 2 * M + 5 * M  # looked at again later, not on every scan

    assert (scan_sla(T0 + 3 * M).errors, scan_sla(T0 + 8 * M).errors) == (0, 2)
    assert len([e for e in history(bad.id) if e.kind.endswith("scan_failed")]) == 2  # recorded once each
    with transaction() as s:  # repaired
        s.execute(update(DefinitionRow).where(DefinitionRow.workflow_id == "broken").values(
            spec=Workflow(id="broken", steps=[{"id": "s", "sla": "1m", "on_breach": "fail"}], sla="2m").spec()))
    report = scan_sla(T0 + 14 * M)
    assert (report.violations, report.errors) == (2, 0)
    assert get_instance(bad.id).status == "failed"  # its breach policy applied once the row could be read


def test_every_scan_is_recorded(backend: Backend) -> None:
    from oms.store.runs import SCAN, last_run, missing_scan

    assert last_run(SCAN) is None and "no SLA scan has run yet" in (missing_scan() or "")
    _start([{"id": "s", "sla": "1m"}])
    scan_sla(T0 + 2 * M)
    run = last_run(SCAN)
    assert run is not None and run.rows == 1 and run.errors == 0 and run.details["violations"] == 1
    assert run.finished_at >= run.started_at and missing_scan() is None
    assert "no SLA scan for 35 s" in (missing_scan(run.finished_at + 35 * S) or "")  # 3 intervals of 10 s


def test_long_retry_backoffs_are_capped_and_fit_the_broker(backend: Backend) -> None:
    """Regression (issue 12, 4.1): ``base * 2**n`` overflowed: retries 60 could not be saved on Redis."""
    from oms.model.limits import check_fits_broker
    from oms.settings import OmsSettings

    wf = Workflow(id="patient", steps=[{"id": "s", "sla": "1m", "retries": 60, "retry_backoff": "1s"}])
    assert {wf.steps[0].retry_delay(n) for n in (48, 60, 1000, 10**6)} == {10 * M}
    check_fits_broker(wf, OmsSettings(broker_url="redis://127.0.0.1:1/0"))
    wf.save()
    iid = start_instance_of("patient")
    now = T0
    for _ in range(60):
        task = door.claim_step(iid, 0, "w1", now=now)
        assert task is not None
        door.fail(task, "again", now=now)
        now += 10 * M
    assert scan_sla(now).errors == 0 and get_instance(iid).status == "running"


def test_steps_no_worker_runs_are_not_held_to_the_redis_visibility_timeout() -> None:
    """A person's, a signal's or a timer's step publishes no message: a month for the citizen's form fits Redis."""
    from oms.exceptions import ConfigurationError
    from oms.model.limits import check_fits_broker
    from oms.settings import OmsSettings

    redis = OmsSettings(broker_url="redis://127.0.0.1:1/0")
    check_fits_broker(Workflow(id="patient", steps=[
        {"id": "collect_form", "wait_for": "form_submitted", "sla": "30d"},
        {"id": "assign_inspector", "assign": {"groups": ["inspectors"]}, "sla": "10d"},
        {"id": "cooling_off", "sleep": "30d"}]), redis)
    with pytest.raises(ConfigurationError, match="'charge_fee' .* OMS_VISIBILITY_TIMEOUT"):
        check_fits_broker(Workflow(id="impatient", steps=[{"id": "charge_fee", "sla": "10d"}]), redis)


def start_instance_of(workflow_id: str) -> str:
    with transaction() as s:
        definition, version = load_definition(s, workflow_id)
        instance, _ = start_instance(s, definition, version, {}, T0)
    return instance.id


def test_list_and_status_read_the_same_light_before_the_scanner_has_seen_it(backend: Backend) -> None:
    """Regression (issue 12, 3): `oms status` showed an overdue step red while `oms list` showed it green."""
    from oms.reads.instances import list_instances
    from oms.store.lights import seen_light

    late = _start([{"id": "s", "sla": "1m"}])
    done_late = _start([{"id": "s", "sla": "1m"}])
    task = door.claim_step(done_late, 0, "w1", now=T0)
    assert task is not None
    door.extend(task.id, "1h", now=T0)
    door.complete(task, None, now=T0 + 2 * M)
    deadline = _start([{"id": "s", "sla": "1h"}], sla="10m")

    def lights(now: datetime) -> dict[str, str]:
        listed = {i.id: i.light for i in list_instances(now=now) if i.workflow_id == "w"}
        for instance_id, light in listed.items():  # as `oms status` reads them
            info = get_instance(instance_id)
            status = max([seen_light(info.light, info.warn_at, info.expires_at, info.finished_at, now),
                          *(seen_light(t.light, t.warn_at, t.expires_at, t.finished_at, now) for t in info.tasks)],
                         key=["green", "yellow", "red"].index)
            assert status == light, (instance_id, status, light)
        return listed

    assert lights(T0 + 30 * S) == {late: "green", done_late: "red", deadline: "green"}
    assert lights(T0 + 50 * S) == {late: "yellow", done_late: "red", deadline: "green"}
    assert lights(T0 + 9 * M) == {late: "red", done_late: "red", deadline: "yellow"}
    assert [i.id for i in list_instances(light="red", now=T0 + 9 * M)] == sorted([late, done_late], key=[
        i.id for i in list_instances(now=T0)].index)
    assert _kinds(late) == []  # no scan ran: the clock alone says so
    scan_sla(T0 + 11 * M)
    assert lights(T0 + 11 * M) == {late: "red", done_late: "red", deadline: "red"}
