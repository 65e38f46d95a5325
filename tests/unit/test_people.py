"""People in the loop, on SQLite (and PostgreSQL, ``tests/integration/test_on_postgres.py``): human steps and the
inbox, signals and business keys, timers; each move's rows and events."""

from __future__ import annotations

from datetime import timedelta

import pytest

import oms
from act import complete_task, fail_task, fetch_task
from oms import (
    BusinessKeyInUse,
    FormError,
    InstanceFinished,
    InvalidDefinition,
    NotAssigned,
    SignalRefused,
    TaskClaimed,
    UnknownBusinessKey,
    UnknownSignal,
    UnknownUser,
    Workflow,
)
from oms.durations import utcnow
from oms.exceptions import InvalidArgument, NotAHumanStep, NotLeaseHolder, TaskNotClaimed
from oms.model.forms import check_form, validator
from oms.states import TaskStatus
from oms.store.db import transaction
from oms.store.tables import TaskRow

from ..conftest import Backend

FORM = {"type": "object", "required": ["inspector"],
        "properties": {"inspector": {"type": "string"}, "visit_on": {"type": "string", "format": "date"}}}
INSPECTION = {"id": "inspection", "steps": [
    {"id": "assign_inspector", "sla": "2h", "assign": {"groups": ["inspectors"]}, "form": FORM},
    {"id": "report", "sla": "1h"},
]}
PORTAL = {"id": "portal", "steps": [
    {"id": "collect_form", "wait_for": "form_submitted", "sla": "5d"},
    {"id": "validate_tax_id", "sla": "2m"},
]}
LATE_SIGNAL = {"id": "late_signal", "steps": [
    {"id": "validate_tax_id", "sla": "2m"},
    {"id": "collect_form", "wait_for": "form_submitted", "sla": "5d", "form": {"type": "object",
                                                                              "required": ["form_number"]}},
    {"id": "charge_fee", "sla": "1m"},
]}
COOLING = {"id": "cooling", "steps": [{"id": "cooling_off", "sleep": "10m"}, {"id": "issue_permit", "sla": "1h"}]}


@pytest.fixture
def people(backend: Backend) -> Backend:
    oms.create_user("alice", ["inspectors"], email="alice@agency.gov")
    oms.create_user("bob", ["inspectors", "team_leads"])
    oms.create_user("carol", ["billing"])
    oms.create_user("dave", ["supervisors"], role="supervisor")
    return backend


def _task(instance_id: str, step_id: str) -> TaskRow:
    with transaction() as session:
        rows = session.query(TaskRow).filter_by(instance_id=instance_id, step_id=step_id).order_by(TaskRow.attempt)
        return rows.all()[-1]


def _kinds(instance_id: str) -> list[tuple[str, str | None]]:
    return [(e.kind, e.step_id) for e in oms.history(instance_id)]


def _started(workflow: dict[str, object], **kwargs: object) -> str:
    Workflow(**workflow).save()  # type: ignore[arg-type]
    return oms.start_workflow(str(workflow["id"]), {"facility": "Acme"}, **kwargs)  # type: ignore[arg-type]


# -- human steps ----------------------------------------------------------------------------------------------------

def test_an_inspector_claims_from_her_inbox_and_completes_with_the_form(people: Backend) -> None:
    iid = _started(INSPECTION, business_key="F8700-12-1")
    [item] = oms.inbox("alice")
    assert (item.instance_id, item.step_id, item.claimed_by, item.actionable) == (iid, "assign_inspector", None, True)
    assert item.business_key == "F8700-12-1" and item.form == FORM and item.light == "green"
    assert 0 < item.time_left_s <= 7200
    assert oms.inbox("carol") == []
    with pytest.raises(NotAssigned, match="not assigned to 'carol'"):
        oms.claim(item.task_id, "carol")

    task = oms.claim(item.task_id, "alice")
    assert task.payload == {"facility": "Acme"} and task.worker_id == "alice"
    assert oms.claim(item.task_id, "alice").id == task.id  # hers already: nothing changes
    [seen_by_bob] = oms.inbox("bob")
    assert (seen_by_bob.claimed_by, seen_by_bob.actionable) == ("alice", False)
    with pytest.raises(TaskClaimed, match="claimed by 'alice'"):
        oms.claim(item.task_id, "bob")

    with pytest.raises(FormError) as refused:
        complete_task(item.task_id, {"visit_on": "next tuesday"}, worker_id="alice")
    assert set(refused.value.fields) == {"inspector", "visit_on"}
    assert _task(iid, "assign_inspector").status == TaskStatus.RUNNING  # still hers
    with pytest.raises(NotLeaseHolder):
        complete_task(item.task_id, {"inspector": "bob"}, worker_id="bob")

    complete_task(item.task_id, {"inspector": "alice", "visit_on": "2026-12-10"}, worker_id="alice")
    assert oms.get_instance(iid).results["assign_inspector"] == {"inspector": "alice", "visit_on": "2026-12-10"}
    assert _task(iid, "report").status == TaskStatus.PENDING
    assert oms.inbox("alice") == []
    assert [k for k in _kinds(iid) if k[1] == "assign_inspector"] == [
        ("task.queued", "assign_inspector"), ("task.started", "assign_inspector"), ("task.done", "assign_inspector")]


def test_a_human_step_is_claimed_by_people_only(people: Backend) -> None:
    iid = _started(INSPECTION)
    task_id = _task(iid, "assign_inspector").id
    with pytest.raises(TaskNotClaimed):
        complete_task(task_id, {"inspector": "x"}, worker_id="alice")
    with pytest.raises(InvalidArgument, match="reserved"):
        fetch_task("oms.human", max_wait=0)
    with pytest.raises(UnknownUser, match="unknown user 'zoe'"):
        oms.claim(task_id, "zoe")
    oms.claim(task_id, "alice")
    complete_task(task_id, {"inspector": "alice"}, worker_id="alice")
    with pytest.raises(NotAHumanStep):
        oms.claim(_task(iid, "report").id, "alice")


def test_release_puts_the_step_back_and_its_clock_runs_on(people: Backend) -> None:
    iid = _started(INSPECTION)
    before = _task(iid, "assign_inspector")
    oms.claim(before.id, "alice")
    with pytest.raises(NotLeaseHolder):
        oms.release(before.id, "bob")
    oms.release(before.id, "alice")
    after = _task(iid, "assign_inspector")
    assert (after.id, after.status, after.worker_id, after.expires_at) == (before.id, "pending", None,
                                                                          before.expires_at)
    assert oms.claim(before.id, "bob").worker_id == "bob"
    assert ("task.released", "assign_inspector") in _kinds(iid)


def test_a_failed_human_step_is_retried_per_its_rules(people: Backend) -> None:
    spec = {"id": "approval", "steps": [{"id": "approve", "sla": "1d", "retries": 1,
                                         "assign": {"users": ["alice"]}}]}
    iid = _started(spec)
    first = _task(iid, "approve")
    oms.claim(first.id, "alice")
    fail_task(first.id, "the facility sent the wrong form", worker_id="alice")
    second = _task(iid, "approve")
    assert (second.attempt, second.status, second.assign) == (2, "pending", {"users": ["alice"], "groups": []})


def test_a_supervisor_reassigns_and_disabling_a_person_gives_her_steps_back(people: Backend) -> None:
    iid = _started(INSPECTION)
    task_id = _task(iid, "assign_inspector").id
    oms.claim(task_id, "alice")
    moved = oms.reassign(task_id, user="bob", by="dave")
    assert moved.worker_id == "bob"
    assert _task(iid, "assign_inspector").assign == {"users": ["bob"], "groups": []}
    assert [item.task_id for item in oms.inbox("alice")] == []  # no longer hers nor her group's
    oms.reassign(task_id, groups=["inspectors"], by="dave")
    row = _task(iid, "assign_inspector")
    assert (row.status, row.worker_id) == ("pending", None)
    kinds = [k for k, step in _kinds(iid) if step == "assign_inspector"]
    assert kinds == ["task.queued", "task.started", "task.released", "task.reassigned", "task.started",
                     "task.released", "task.reassigned"]
    with pytest.raises(InvalidArgument):
        oms.reassign(task_id, by="dave")

    oms.claim(task_id, "alice")
    [returned] = oms.disable_user("alice")
    assert returned.id == task_id and _task(iid, "assign_inspector").status == "pending"
    with pytest.raises(UnknownUser, match="disabled"):
        oms.inbox("alice")
    assert oms.disable_user("alice") == []  # again: nothing more


# -- signals and business keys --------------------------------------------------------------------------------------

def test_the_portal_signals_by_form_number_and_the_data_is_the_result(people: Backend) -> None:
    iid = _started(PORTAL, business_key="F8700-12-42")
    with pytest.raises(BusinessKeyInUse, match=iid):
        oms.start_workflow("portal", {}, business_key="F8700-12-42")
    with pytest.raises(UnknownSignal, match="form_submitted"):
        oms.signal_by_key("portal", "F8700-12-42", "payment_made")
    with pytest.raises(UnknownBusinessKey):
        oms.signal_by_key("portal", "F8700-12-43", "form_submitted")

    receipt = oms.signal_by_key("portal", "F8700-12-42", "form_submitted", {"epa_id": "TXD0001"},
                                idempotency_key="portal-req-1")
    assert (receipt.instance_id, receipt.new) == (iid, True) and receipt.task_id == _task(iid, "collect_form").id
    assert oms.get_instance(iid).results["collect_form"] == {"epa_id": "TXD0001"}
    assert _task(iid, "validate_tax_id").status == "pending"
    again = oms.signal(iid, "form_submitted", {"epa_id": "other"}, idempotency_key="portal-req-1")
    assert (again.signal_id, again.new) == (receipt.signal_id, False)
    with pytest.raises(SignalRefused, match="done already"):
        oms.signal(iid, "form_submitted", {"epa_id": "TXD0001"})
    assert [k for k in _kinds(iid) if k[1] == "collect_form"] == [
        ("task.queued", "collect_form"), ("signal.received", "collect_form"), ("task.done", "collect_form")]

    oms.cancel_workflow(iid, "withdrawn")
    with pytest.raises(InstanceFinished):
        oms.signal_by_key("portal", "F8700-12-42", "form_submitted")
    assert oms.start_workflow("portal", {}, business_key="F8700-12-42") != iid  # ended: the key is free again


def test_a_failed_instance_is_not_run_again_while_its_key_belongs_to_a_newer_one(people: Backend) -> None:
    Workflow(id="keyed", steps=[{"id": "keyed_step", "sla": "1h"}]).save()
    first = oms.start_workflow("keyed", {}, business_key="F-1")
    task = fetch_task("keyed_step", max_wait=0, worker_id="w")
    assert task is not None
    fail_task(task.id, "IRS down", worker_id="w")
    second = oms.start_workflow("keyed", {}, business_key="F-1")  # the failed one's key is free
    with pytest.raises(BusinessKeyInUse, match=second):
        oms.retry_workflow(first)
    assert oms.get_instance(first).status == "failed"  # nothing changed
    oms.cancel_workflow(second)
    oms.retry_workflow(first)
    assert oms.get_instance(first).status == "running"


def test_a_signal_before_its_step_is_kept_and_taken_when_the_step_is_ready(people: Backend) -> None:
    iid = _started(LATE_SIGNAL)
    with pytest.raises(FormError, match="the data of signal 'form_submitted' does not fit the form of step "
                                        "'collect_form': form_number: 'form_number' is a required property"):
        oms.signal(iid, "form_submitted", {"wrong": 1})
    kept = oms.signal(iid, "form_submitted", {"form_number": "F-9"})
    assert kept.task_id is None
    with pytest.raises(SignalRefused, match="kept"):
        oms.signal(iid, "form_submitted", {"form_number": "F-10"})
    task = fetch_task("validate_tax_id", max_wait=0, worker_id="w")
    assert task is not None
    complete_task(task.id, {"valid": True}, worker_id="w")
    assert _task(iid, "collect_form").status == "done"
    assert oms.get_instance(iid).results["collect_form"] == {"form_number": "F-9"}
    assert _task(iid, "charge_fee").status == "pending"


def test_a_form_names_every_required_field_missing() -> None:
    form = validator({**FORM, "required": ["inspector", "visit_on"]})
    with pytest.raises(FormError) as refused:
        check_form(form, {}, "assign_inspector")
    assert refused.value.fields == {"inspector": "'inspector' is a required property",
                                    "visit_on": "'visit_on' is a required property"}


# -- timers ---------------------------------------------------------------------------------------------------------

def test_a_timer_ends_once_when_its_time_has_passed(people: Backend) -> None:
    iid = _started(COOLING)
    timer = _task(iid, "cooling_off")
    assert timer.wake_at is not None and timer.topic == "oms.timer"
    assert oms.scan_sla(now=utcnow() + timedelta(minutes=5)).timers == 0
    assert _task(iid, "cooling_off").status == "pending"
    assert oms.scan_sla(now=timer.wake_at + timedelta(seconds=1)).timers == 1
    assert oms.scan_sla(now=timer.wake_at + timedelta(seconds=2)).timers == 0
    assert _task(iid, "cooling_off").status == "done"
    assert _task(iid, "issue_permit").status == "pending"
    assert [k for k in _kinds(iid) if k[1] == "cooling_off"] == [("task.queued", "cooling_off"),
                                                                  ("task.done", "cooling_off")]


def test_a_cancelled_instance_cancels_its_timer(people: Backend) -> None:
    iid = _started(COOLING)
    wake_at = _task(iid, "cooling_off").wake_at
    oms.cancel_workflow(iid, "withdrawn")
    assert _task(iid, "cooling_off").status == "cancelled"
    assert wake_at is not None and oms.scan_sla(now=wake_at + timedelta(minutes=1)).timers == 0


# -- definitions ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("step", "said"), [
    ({"assign": {"groups": ["a"]}, "wait_for": "x", "sla": "1h"}, "not assign and wait_for"),
    ({"form": {"type": "object"}, "sla": "1h"}, "only a human step"),
    ({"assign": {"groups": ["a"]}, "topic": "mine", "sla": "1h"}, "offered to no worker"),
    ({"assign": {}, "sla": "1h"}, "names nobody"),
    ({"assign": {"groups": ["a"]}, "form": {"type": "array"}, "sla": "1h"}, "describes a JSON object"),
    ({"assign": {"groups": ["a"]}, "form": {"type": "object", "required": "x"}, "sla": "1h"}, "not a JSON Schema"),
    ({"sleep": "10m", "sla": "1h"}, "a timer's clock is its sleep"),
    ({"sleep": "2bd"}, "name the calendar"),
    ({"wait_for": "x"}, "sla: Field required"),
    ({"wait_for": "x", "sla": "1h", "map": "payload.items"}, "maps over nothing"),
])
def test_steps_of_people_signals_and_timers_are_checked(step: dict[str, object], said: str) -> None:
    with pytest.raises(InvalidDefinition, match=said):
        Workflow(id="w", steps=[{"id": "s", **step}])  # type: ignore[list-item]


def test_two_steps_cannot_wait_for_the_same_signal() -> None:
    with pytest.raises(InvalidDefinition, match="both wait for 'x'"):
        Workflow(id="w", steps=[{"id": "a", "wait_for": "x", "sla": "1h"},  # type: ignore[list-item]
                                {"id": "b", "wait_for": "x", "sla": "1h"}])


def test_steps_of_people_and_timers_follow_a_worker_s_step(people: Backend) -> None:
    """The one-statement path (PostgreSQL) offers a human step and a timer after a worker's step, with their
    candidates and wake time."""
    spec = {"id": "after_work", "steps": [
        {"id": "validate_tax_id", "sla": "2m"},
        {"id": "approve", "sla": "1d", "assign": {"users": ["bob"], "groups": ["supervisors"]}},
        {"id": "cooling_off", "sleep": "1h"},
        {"id": "issue_permit", "sla": "1h"},
    ]}
    iid = _started(spec)
    task = fetch_task("validate_tax_id", max_wait=0, worker_id="w")
    assert task is not None
    complete_task(task.id, {"valid": True}, worker_id="w")
    approve = _task(iid, "approve")
    assert (approve.status, approve.topic, approve.assign) == ("pending", "oms.human",
                                                              {"users": ["bob"], "groups": ["supervisors"]})
    assert [item.step_id for item in oms.inbox("bob")] == ["approve"]
    assert [item.step_id for item in oms.inbox("dave")] == ["approve"]  # his group's
    oms.claim(approve.id, "bob")
    complete_task(approve.id, None, worker_id="bob")
    timer = _task(iid, "cooling_off")
    assert timer.status == "pending" and timer.wake_at is not None
    assert timedelta(minutes=59) < timer.wake_at - timer.ready_at <= timedelta(hours=1)
