"""Escalation ladders with the clock passed in (SQLite; the race of two scanners: tests/integration/test_ladders.py):
each rung fires once at its moment, in working time under a calendar, later by a pause; what it does (notices,
a reassignment, an escalation task, a breach policy) and what it records; ladders refused naming the rung."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

import oms
from oms import Calendar, InvalidDefinition, Workflow, get_instance, history, scan_sla
from oms.cli.kinds import event_details
from oms.engine import door
from oms.engine.starts import start_instance
from oms.ops import metrics
from oms.store.catalog import load_definition
from oms.store.db import database, transaction
from oms.store.tables import ChannelRow, DefinitionRow, InstanceRow, NoticeRow, TaskRow

from ..conftest import Backend
from .test_worktime import FEDERAL, ny

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)

#: The issue's ladder: the inspector gets two business days; her lead, then the supervisors, then the director hear.
LADDER = [
    {"at": "50%", "notify": ["assignee"]},
    {"at": "75%", "notify": ["group:team_leads"]},
    {"at": "100%", "notify": ["group:supervisors", "oncall-pager"], "reassign": {"groups": ["supervisors"]}},
    {"at": "100% + 1bd", "notify": ["director-mail"]},
]
INSPECTION = {"id": "inspection", "steps": [
    {"id": "assign_inspector", "sla": "2bd", "calendar": "us_federal", "assign": {"groups": ["inspectors"]},
     "escalations": LADDER},
    {"id": "report", "sla": "1h"},
]}


@pytest.fixture
def agency(backend: Backend) -> Backend:
    """The people and channels the ladders name, and the federal calendar."""
    FEDERAL.save()
    oms.create_user("alice", ["inspectors"])
    oms.create_user("bob", ["team_leads"])
    oms.create_user("dave", ["supervisors"], role="supervisor")
    for name in ("oncall-pager", "director-mail", "ops"):
        _channel(name)
    return backend


def _channel(name: str) -> None:
    with transaction() as s:  # PostgreSQL keeps oms_channels between tests (tests/integration/test_on_postgres.py)
        s.execute(delete(ChannelRow).where(ChannelRow.name == name))
    with transaction() as s:
        s.add(ChannelRow(name=name, kind="webhook", url=f"https://hooks.example.invalid/{name}",
                         created_at=datetime.now(UTC)))


def _start(spec: dict[str, Any], now: datetime, business_key: str | None = None) -> str:
    Workflow(**spec).save()
    with transaction() as s:
        definition, version = load_definition(s, spec["id"])
        instance, _ = start_instance(s, definition, version, {"form_id": "F-1"}, now)
        instance.business_key = business_key
        return instance.id


def _task(instance_id: str, step: str) -> TaskRow:
    with transaction() as s:
        return s.scalars(select(TaskRow).where(TaskRow.instance_id == instance_id, TaskRow.step_id == step)
                         .order_by(TaskRow.attempt.desc())).first()  # type: ignore[return-value]


def _notices(instance_id: str) -> list[NoticeRow]:
    with transaction() as s:
        rows = s.scalars(select(NoticeRow).where(NoticeRow.instance_id == instance_id)
                         .order_by(NoticeRow.rung, NoticeRow.target)).all()
        s.expunge_all()
        return list(rows)


def _escalated(instance_id: str) -> list[dict[str, Any]]:
    return [e.data for e in history(instance_id) if e.kind.endswith(".escalated")]


def _system_instances() -> list[str]:
    with transaction() as s:
        return list(s.scalars(select(InstanceRow.workflow_id).where(InstanceRow.workflow_id.startswith("oms."))))


def _fired(now: datetime) -> int:
    return scan_sla(now).escalated


def test_each_rung_fires_once_at_its_moment_in_working_time(agency: Backend) -> None:
    start = ny(2026, 12, 7, 10)  # Monday 10:00; 2bd: Wednesday 10:00, sixteen working hours
    iid = _start(INSPECTION, start, business_key="F8700-12-42")
    task = _task(iid, "assign_inspector")
    assert task.expires_at == ny(2026, 12, 9, 10)
    assert task.sla_check_at == ny(2026, 12, 8, 10)  # the first rung (8 working hours in) comes before warn_at
    assert _fired(ny(2026, 12, 7, 23)) == 0  # the night does not count
    assert _fired(ny(2026, 12, 8, 9, 59)) == 0

    assert _fired(ny(2026, 12, 8, 10)) == 1  # 50%: nobody holds it, so its candidates hear
    assert _fired(ny(2026, 12, 8, 10, 30)) == 0  # once
    [first] = _notices(iid)
    assert (first.target, first.rung, first.task_id, first.step_id, first.status) == (
        "group:inspectors", 1, task.id, "assign_inspector", "pending")
    assert first.facts == {
        "workflow": "inspection", "instance_id": iid, "task_id": task.id, "step": "assign_inspector", "light": "green",
        "expires_at": ny(2026, 12, 9, 10).isoformat(), "overdue_by_s": 0.0, "business_key": "F8700-12-42",
        "rung": 1, "at": "50%"}

    oms.claim(task.id, "alice", now=ny(2026, 12, 8, 11))
    assert _fired(ny(2026, 12, 8, 13, 59)) == 0
    assert _fired(ny(2026, 12, 8, 14)) == 1  # 75%: twelve working hours in
    report = scan_sla(ny(2026, 12, 8, 14, 48))  # 80%: the light turns yellow as ever
    assert (report.warnings, report.escalated, report.escalations) == (1, 0, [])  # the ladder replaces sla_warning

    report = scan_sla(ny(2026, 12, 9, 10))  # 100%: red, and the step goes to the supervisors
    assert (report.violations, report.escalated, report.escalations) == (1, 1, [])
    moved = _task(iid, "assign_inspector")
    assert (moved.status, moved.worker_id, moved.assign, moved.light) == (
        "pending", None, {"users": [], "groups": ["supervisors"]}, "red")
    assert [i.task_id for i in oms.inbox("dave")] == [task.id]
    assert oms.inbox("alice") == []
    kinds = [e.kind for e in history(iid) if e.at == ny(2026, 12, 9, 10)]
    assert kinds == ["task.sla_violated", "task.escalated", "task.released", "task.reassigned"]

    assert _fired(ny(2026, 12, 10, 9, 59)) == 0
    assert _fired(ny(2026, 12, 10, 10)) == 1  # 100% + 1bd: Thursday 10:00
    assert _task(iid, "assign_inspector").sla_check_at is None  # red, every rung fired: nothing left to look at
    assert _fired(ny(2026, 12, 20)) == 0

    assert [(n.rung, n.target) for n in _notices(iid)] == [
        (1, "group:inspectors"), (2, "group:team_leads"), (3, "group:supervisors"), (3, "oncall-pager"),
        (4, "director-mail")]
    events = _escalated(iid)
    assert [(e["rung"], e["of"], e["at"]) for e in events] == [
        (1, 4, "50%"), (2, 4, "75%"), (3, 4, "100%"), (4, 4, "100% + 1bd")]
    assert events[2]["reassigned"] == {"users": [], "groups": ["supervisors"]}
    assert events[2]["due_at"] == ny(2026, 12, 9, 10).isoformat()
    assert [n["target"] for n in events[2]["notices"]] == ["group:supervisors", "oncall-pager"]
    assert {n["id"] for e in events for n in e["notices"]} == {n.id for n in _notices(iid)}
    assert event_details("task.escalated", events[2]) == (
        f"rung 3 of 4 at 100% (due {ny(2026, 12, 9, 10).isoformat()}): told group:supervisors, oncall-pager; "
        "reassigned to group supervisors")
    released = next(e for e in history(iid) if e.kind == "task.released")
    assert released.data == {"worker_id": "alice", "reason": "reassigned by escalation rung 3 (100%)"}
    step = next(s for s in get_instance(iid).steps if s.id == "assign_inspector")
    assert (step.escalations, step.escalated) == (4, 4)
    assert not any(w.startswith("oms.sla_") for w in _system_instances())


def test_the_assignee_is_whoever_holds_the_step_when_the_rung_fires(agency: Backend) -> None:
    iid = _start({"id": "claimed", "steps": [{"id": "review", "sla": "10m", "assign": {"users": ["alice", "bob"]},
                                               "escalations": [{"at": "50%", "notify": ["assignee", "ops"]}]}]}, T0)
    oms.claim(_task(iid, "review").id, "alice", now=T0 + M)
    assert _fired(T0 + 5 * M) == 1
    assert [n.target for n in _notices(iid)] == ["ops", "user:alice"]


def test_a_paused_clock_delays_its_rungs_by_the_pause(agency: Backend) -> None:
    iid = _start({"id": "paused", "steps": [{"id": "review", "sla": "10m", "escalations": [
        {"at": "50%", "notify": ["ops"]}, {"at": "100% + 5m", "notify": ["ops"]}]}]}, T0)
    task, _ = door.claim_topic("review", "w1", timedelta(hours=1), now=T0 + M)
    assert task is not None
    door.pause(task.id, "waiting for citizen", now=T0 + 2 * M)
    assert _fired(T0 + 10 * M) == 0  # paused: neither warned, breached nor escalated
    door.resume_clock(task.id, now=T0 + 30 * M)  # 28 minutes paused
    assert _task(iid, "review").sla_check_at == T0 + 33 * M  # the 50% rung, moved with the deadline
    assert _fired(T0 + 32 * M) == 0
    assert _fired(T0 + 33 * M) == 1
    report = scan_sla(T0 + 42 * M)
    assert (report.violations, report.escalated) == (1, 0)  # red at 38 minutes; its rung is 5 minutes after
    assert _fired(T0 + 43 * M) == 1
    assert [e["due_at"] for e in _escalated(iid)] == [(T0 + 33 * M).isoformat(), (T0 + 43 * M).isoformat()]


def test_a_changed_calendar_moves_the_rungs_not_fired_yet(agency: Backend) -> None:
    iid = _start({"id": "moved", "calendar": "us_federal", "steps": [{"id": "inspect", "sla": "2bd", "escalations": [
        {"at": "50%", "notify": ["ops"]}, {"at": "100%", "notify": ["ops"]}]}]}, ny(2026, 12, 7, 10))
    assert _task(iid, "inspect").sla_check_at == ny(2026, 12, 8, 10)
    closed = FEDERAL.model_copy(update={"closed": [datetime(2026, 12, 8).date()]})  # Tuesday closed
    assert Calendar(**closed.spec()).save() == 1
    moved = _task(iid, "inspect")
    assert moved.expires_at == ny(2026, 12, 10, 10)
    assert moved.sla_check_at == ny(2026, 12, 9, 10)  # halfway, in the new working time
    assert _fired(ny(2026, 12, 8, 12)) == 0
    assert _fired(ny(2026, 12, 9, 10)) == 1


def test_without_a_ladder_the_default_escalations_are_unchanged_and_an_empty_one_has_none(agency: Backend) -> None:
    plain = _start({"id": "plain", "steps": [{"id": "a", "sla": "5m"}]}, T0)
    quiet = _start({"id": "quiet", "steps": [{"id": "a", "sla": "5m", "escalations": []}]}, T0)
    assert _task(plain, "a").sla_check_at == _task(quiet, "a").sla_check_at == T0 + 4 * M
    report = scan_sla(T0 + 6 * M)
    assert (report.violations, report.escalated) == (2, 0)
    assert sorted(_system_instances()) == ["oms.sla_violation"]  # the plain step's only
    assert [e.kind for e in history(quiet) if "sla" in e.kind] == ["task.sla_violated"]
    assert _task(quiet, "a").sla_check_at is None
    assert [(s.escalations, s.escalated) for s in get_instance(plain).steps] == [(None, None)]
    assert [(s.escalations, s.escalated) for s in get_instance(quiet).steps] == [(0, 0)]


def test_a_rung_starts_an_escalation_task_on_its_topic_and_applies_a_breach_policy(agency: Backend) -> None:
    iid = _start({"id": "coded", "steps": [{"id": "charge_fee", "sla": "10m", "retries": 1, "escalations": [
        {"at": "50%", "topic": "governance"}, {"at": "100% + 1m", "policy": "retry"}]}]}, T0)
    report = scan_sla(T0 + 5 * M)
    [escalation] = report.escalations
    assert _system_instances() == ["oms.escalation.governance"]
    with transaction() as s:
        offered = s.scalars(select(TaskRow).where(TaskRow.instance_id == escalation)).one()
        assert offered.topic == "governance"
        assert {k: offered.payload[k] for k in ("action", "instance_id", "step", "rung", "at")} == {
            "action": "escalation", "instance_id": iid, "step": "charge_fee", "rung": 1, "at": "50%"}
    assert _escalated(iid)[0]["escalation"] == escalation
    assert _fired(T0 + 11 * M) == 1  # 100% + 1m: the attempt fails and the step is offered again, a fresh ladder
    first, second = sorted((t for t in get_instance(iid).tasks), key=lambda t: t.attempt)
    assert (first.status, first.error, second.status, second.rung) == (
        "failed", "SLA escalated (rung 2, 100% + 1m)", "pending", None)
    assert _escalated(iid)[1]["policy"] == "retry"
    assert _fired(T0 + 16 * M) == 1  # the second attempt's own 50%


def test_a_rung_saves_its_escalation_workflow_in_the_scans_own_transaction(agency: Backend) -> None:
    """One saved before this version of the engine, or deleted since: the scan saves it (on SQLite, another
    transaction would wait for the scan's write lock)."""
    iid = _start({"id": "coded", "steps": [{"id": "a", "sla": "10m", "escalations": [
        {"at": "50%", "topic": "governance"}]}]}, T0)
    with transaction() as s:
        s.execute(delete(DefinitionRow).where(DefinitionRow.workflow_id == "oms.escalation.governance"))
    database().saved.clear()
    [escalation] = scan_sla(T0 + 5 * M).escalations
    assert get_instance(escalation).workflow_id == "oms.escalation.governance"
    assert _escalated(iid)[0]["escalation"] == escalation
    assert scan_sla(T0 + 6 * M).escalations == []


def test_oms_status_and_history_say_how_far_a_ladder_climbed(agency: Backend) -> None:
    from click.testing import CliRunner

    from oms.cli import main

    iid = _start({"id": "told", "steps": [{"id": "review", "sla": "10m", "escalations": [
        {"at": "50%", "notify": ["ops"]}, {"at": "100%", "notify": ["ops"]}]}]}, T0)
    scan_sla(T0 + 5 * M)
    runner = CliRunner()
    status = runner.invoke(main, ["status", iid])
    assert status.exit_code == 0, status.output
    assert "escalated 1 of 2" in status.stdout
    told = runner.invoke(main, ["history", iid]).stdout
    assert f"rung 1 of 2 at 50% (due {(T0 + 5 * M).isoformat()}): told ops" in told


def test_a_predicted_yellow_or_an_overrun_starts_no_default_escalation_under_a_ladder(agency: Backend) -> None:
    from oms.engine import control
    from oms.sla.advance import Batch, apply_prediction
    from oms.sla.predict import Change

    iid = _start({"id": "paced", "steps": [{"id": "a", "sla": "10m", "escalations": [
        {"at": "90%", "notify": ["ops"]}]}]}, T0)
    work = Batch(T0 + M)
    with transaction() as s:
        task = s.get(TaskRow, _task(iid, "a").id)
        definition, _ = load_definition(s, "paced")
        assert task is not None
        apply_prediction(s, task, definition, Change(task.id, "yellow", T0 + 20 * M, {"position": 3}), work)
        work.start(s)
    assert (work.warnings, work.started) == (1, [])
    predicted = _task(iid, "a")
    assert (predicted.light, predicted.light_reason, predicted.sla_check_at) == ("yellow", "predicted", T0 + 9 * M)

    claimed, _ = door.claim_topic("a", "w1", timedelta(hours=1), now=T0 + 2 * M)
    assert claimed is not None
    control.breach(claimed.id, "soft time limit", T0 + 11 * M)  # the prefork pool's timer: red, the attempt fails
    assert _system_instances() == []
    assert [e.kind for e in history(iid) if "sla" in e.kind] == ["task.sla_warning", "task.sla_violated"]


def test_a_workflow_ladder_climbs_the_instance_sla(agency: Backend) -> None:
    iid = _start({"id": "whole", "sla": "1h", "escalations": [{"at": "50%", "notify": ["group:supervisors"]},
                                                                {"at": "100%", "notify": ["director-mail"]}],
                  "steps": [{"id": "a", "sla": "2h"}]}, T0, business_key="K-1")
    with transaction() as s:
        assert s.get(InstanceRow, iid).sla_check_at == T0 + 30 * M  # type: ignore[union-attr]
    assert _fired(T0 + 30 * M) == 1
    report = scan_sla(T0 + 60 * M)
    assert (report.violations, report.escalated, report.escalations) == (1, 1, [])
    assert [(n.rung, n.target, n.task_id, n.step_id) for n in _notices(iid)] == [
        (1, "group:supervisors", None, None), (2, "director-mail", None, None)]
    assert _notices(iid)[0].facts["step"] == "a" and _notices(iid)[0].facts["business_key"] == "K-1"
    assert [e.kind for e in history(iid) if "escalated" in e.kind] == ["workflow.escalated"] * 2
    info = get_instance(iid)
    assert (info.escalations, info.escalated) == (2, 2)
    with transaction() as s:
        assert s.get(InstanceRow, iid).sla_check_at is None  # type: ignore[union-attr]
    rolled = metrics.snapshot(T0 + 2 * metrics.SETTLE + timedelta(days=400)).rolled
    assert rolled.get(("oms_rungs_fired_total", (("rung", "2"), ("step", ""), ("workflow", "whole")))) == 1


def test_a_finished_step_fires_no_more_rungs(agency: Backend) -> None:
    iid = _start({"id": "quick", "steps": [{"id": "a", "sla": "10m", "escalations": [
        {"at": "50%", "notify": ["ops"]}, {"at": "90%", "notify": ["ops"]}]}]}, T0)
    assert _fired(T0 + 5 * M) == 1
    task, _ = door.claim_topic("a", "w1", timedelta(hours=1), now=T0 + 6 * M)
    assert task is not None
    door.complete(task, {"ok": True}, now=T0 + 7 * M)
    assert _fired(T0 + 20 * M) == 0
    assert _task(iid, "a").rung == 1


# -- refused ladders, naming the rung --------------------------------------------------------------------------------

def _refused(spec: dict[str, Any]) -> str:
    with pytest.raises(InvalidDefinition) as refused:
        Workflow(**spec).save()
    return str(refused.value)


def _one(ladder: list[dict[str, Any]], **step: Any) -> dict[str, Any]:
    return {"id": "bad", "steps": [{"id": "s", "sla": "1h", **step, "escalations": ladder}]}


@pytest.mark.parametrize(("ladder", "step", "said"), [
    ([{"at": "75%", "notify": ["ops"]}, {"at": "50%", "notify": ["ops"]}], {},
     "steps[0].escalations[1]: at '50%' is not after the rung before it ('75%')"),
    ([{"at": "100% + 2h", "notify": ["ops"]}, {"at": "100% + 1h", "notify": ["ops"]}], {},
     "steps[0].escalations[1]: at '100% + 1h' is not after"),
    ([{"at": "0%", "notify": ["ops"]}], {}, "steps[0].escalations[0].at: at '0%': a rung fires after the clock starts"),
    ([{"at": "-5%", "notify": ["ops"]}], {}, "steps[0].escalations[0].at: at '-5%' is not a share"),
    ([{"at": "half", "notify": ["ops"]}], {}, "steps[0].escalations[0].at: at 'half' is not a share of the SLA"),
    ([{"at": "150%", "notify": ["ops"]}], {}, "steps[0].escalations[0].at: at '150%': a share is at most 100%"),
    ([{"at": "50% + 1h", "notify": ["ops"]}], {}, "write '100% + 1h'"),
    ([{"at": "100% + 1bd", "notify": ["ops"]}], {}, "steps[0].escalations[0]: at '100% + 1bd' counts business days"),
    ([{"at": "50%"}], {}, "steps[0].escalations[0]: an empty rung"),
    ([{"at": "50%", "notify": ["ops"]}, {"at": "60%", "notify": ["assignee"]}], {},
     "steps[0].escalations[1]: notify assignee: only a human step (assign) has one"),
    ([{"at": "50%", "reassign": {"groups": ["supervisors"]}}], {},
     "steps[0].escalations[0]: reassign: only a human step (assign) is reassigned"),
    ([{"at": "50%", "notify": ["slack:ops"]}], {}, "steps[0].escalations[0].notify: notify target 'slack:ops'"),
    ([{"at": "50%", "notify": ["ops", "ops"]}], {}, "steps[0].escalations[0].notify: notify names 'ops' twice"),
    ([{"at": "50%", "notify": ["ops"]}], {"sleep": "1h", "sla": None}, "steps[0].escalations: a ladder climbs"),
])
def test_a_bad_ladder_is_refused_naming_its_rung(agency: Backend, ladder: list[dict[str, Any]],
                                                   step: dict[str, Any], said: str) -> None:
    spec = _one(ladder, **step)
    if step.get("sla", "") is None:
        del spec["steps"][0]["sla"]
    assert said in _refused(spec)


def test_a_ladder_naming_nobody_is_refused_on_save(agency: Backend) -> None:
    human = {"assign": {"groups": ["inspectors"]}}
    assert "steps[0].escalations[1].notify: no person 'zoe'" in _refused(_one(
        [{"at": "50%", "notify": ["assignee"]}, {"at": "75%", "notify": ["user:zoe"]}], **human))
    assert "steps[0].escalations[0].notify: no person belongs to group 'auditors'" in _refused(_one(
        [{"at": "50%", "notify": ["group:auditors"]}]))
    assert ("steps[0].escalations[0].notify: no channel 'pager': create the channel first"
            in _refused(_one([{"at": "50%", "notify": ["pager"]}])))
    assert "steps[0].escalations[0].reassign: no person belongs to group 'nobody'" in _refused(_one(
        [{"at": "100%", "reassign": {"groups": ["nobody"]}}], **human))
    with transaction() as s:
        s.execute(update(ChannelRow).where(ChannelRow.name == "ops").values(disabled_at=datetime.now(UTC)))
    assert "channel 'ops' is disabled (oms channel enable ops)" in _refused(_one([{"at": "50%", "notify": ["ops"]}]))
    oms.disable_user("bob")
    assert "no person belongs to group 'team_leads'" in _refused(_one([{"at": "50%", "notify": ["group:team_leads"]}]))
    assert Workflow(**_one([{"at": "50%", "notify": ["user:alice", "group:inspectors", "oncall-pager"]}])).save() == 1


def test_a_workflow_ladder_cannot_reassign_nor_name_an_assignee(agency: Backend) -> None:
    base = {"id": "bad", "sla": "1h", "steps": [{"id": "s", "sla": "1h", "assign": {"groups": ["inspectors"]}}]}
    assert "escalations[0]: reassign: a workflow's ladder cannot reassign" in _refused(
        {**base, "escalations": [{"at": "50%", "reassign": {"groups": ["supervisors"]}}]})
    assert "escalations[0]: notify assignee: a workflow has no assignee" in _refused(
        {**base, "escalations": [{"at": "50%", "notify": ["assignee"]}]})
    assert "escalations[0]: policy: a workflow's ladder applies no breach policy" in _refused(
        {**base, "escalations": [{"at": "50%", "policy": "fail"}]})
    assert "escalations: a workflow's ladder climbs the workflow's own sla" in _refused(
        {**base, "sla": None, "escalations": [{"at": "50%", "notify": ["ops"]}]})
