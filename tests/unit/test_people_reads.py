"""What the reads show of human steps, signals and timers: ``get_instance``, ``oms status`` and ``oms history``,
``sla_summary``, ``/metrics``' roll-up and ``oms doctor``; and a timer counted in a calendar's business days.

On SQLite here, on PostgreSQL in ``tests/integration/test_on_postgres.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

import oms
from act import complete_task, fetch_task
from oms import Workflow, get_instance, scan_sla
from oms.cli import main
from oms.durations import utcnow
from oms.ops import doctor, metrics

from ..conftest import Backend
from .test_clocks import _start
from .test_worktime import FEDERAL, ny

#: The registration with a person, a signal and a timer, the signal's step after a machine step so that a signal
#: can come before its step is ready.
REGISTRATION = {"id": "registration", "steps": [
    {"id": "validate_tax_id", "sla": "2m"},
    {"id": "collect_form", "wait_for": "form_submitted", "sla": "5d"},
    {"id": "assign_inspector", "sla": "2h", "assign": {"groups": ["inspectors"]},
     "form": {"type": "object", "required": ["inspector"]}},
    {"id": "cooling_off", "sleep": "10m"},
    {"id": "issue_permit", "sla": "1h"},
]}


@pytest.fixture
def registration(backend: Backend) -> Iterator[str]:
    oms.create_user("alice", ["inspectors"])
    oms.create_user("bob", ["inspectors"])
    oms.create_user("dave", ["supervisors"], role="supervisor")
    Workflow(**REGISTRATION).save()
    yield oms.start_workflow("registration", {"facility": "Acme"}, business_key="F8700-12-42")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _line(text: str, step: str) -> str:
    """The last line of ``oms status`` about ``step`` (its latest attempt)."""
    return [line for line in text.splitlines() if line.startswith(step + " ")][-1]


def _steps(instance_id: str) -> dict[str, Any]:
    return {step.id: step for step in get_instance(instance_id).steps}


def _pending(instance_id: str, step: str) -> str:
    return next(t.id for t in get_instance(instance_id).tasks if t.step_id == step and t.status == "pending")


def _timer(instance_id: str) -> Any:
    [row] = [t for t in get_instance(instance_id).tasks if t.step_id == "cooling_off"]
    assert row.wake_at is not None
    return row


def _wake(instance_id: str) -> datetime:
    """End the instance's timer with a scan a second after it was due; return that moment."""
    ended: datetime = _timer(instance_id).wake_at + timedelta(seconds=1)
    assert scan_sla(now=ended).timers == 1
    return ended


def _through_the_form(instance_id: str) -> None:
    """The portal's signal comes before its step is ready; the tax id is then validated, which takes it."""
    oms.signal_by_key("registration", "F8700-12-42", "form_submitted", {"epa_id": "TXD0001"})
    task = fetch_task("validate_tax_id", max_wait=0, worker_id="irs")
    assert task is not None
    complete_task(task.id, {"valid": True}, worker_id="irs")


def test_each_kind_shows_what_ends_it_in_get_instance_and_oms_status(registration: str) -> None:
    steps = _steps(registration)
    assert [s.kind for s in steps.values()] == ["worker", "wait", "human", "timer", "worker"]
    assert get_instance(registration).business_key == "F8700-12-42"
    assert (steps["collect_form"].wait_for, steps["collect_form"].signal_kept) == ("form_submitted", False)
    assert steps["assign_inspector"].assign == {"users": [], "groups": ["inspectors"]}
    assert (steps["cooling_off"].sleep, steps["cooling_off"].wake_at, steps["cooling_off"].sla) == ("10m", None, None)
    assert steps["validate_tax_id"].assign is None and steps["validate_tax_id"].wait_for is None

    oms.signal_by_key("registration", "F8700-12-42", "form_submitted", {"epa_id": "TXD0001"})
    assert _steps(registration)["collect_form"].signal_kept is True
    shown = _cli("status", registration)
    assert "key       F8700-12-42" in shown
    assert re.search(r"collect_form\s+-\s+waiting\s+-\s+wait\s.*waits for signal form_submitted \(received already",
                     _line(shown, "collect_form"))
    assert re.search(r"assign_inspector\s+-\s+waiting\s+-\s+human\s.*for group inspectors$",
                     _line(shown, "assign_inspector"))
    assert _line(shown, "cooling_off").endswith("sleeps 10m")

    task = fetch_task("validate_tax_id", max_wait=0, worker_id="irs")
    assert task is not None
    complete_task(task.id, {"valid": True}, worker_id="irs")
    steps = _steps(registration)
    assert (steps["collect_form"].status, steps["collect_form"].signal_kept) == ("done", False)
    shown = _cli("status", registration)
    assert "ended by signal form_submitted" in _line(shown, "collect_form")
    assert re.search(r"assign_inspector\s+1\s+pending\s+green\s+human\s+2h\s.*queued for group inspectors; used",
                     _line(shown, "assign_inspector"))

    human = _pending(registration, "assign_inspector")
    oms.claim(human, "alice")
    assert _steps(registration)["assign_inspector"].held_by == "alice"
    assert re.search(r"running\s+green\s+human\s.*alice\s+collect_form\s+held by alice; used",
                     _line(_cli("status", registration), "assign_inspector"))

    complete_task(human, {"inspector": "alice"}, worker_id="alice")
    row = _timer(registration)
    assert _steps(registration)["cooling_off"].wake_at == row.wake_at == row.ready_at + timedelta(minutes=10)
    assert re.search(r"pending\s+green\s+timer\s+-\s.*sleeps 10m, ends \S+Z \(in (10m|9m5\ds)\)$",
                     _line(_cli("status", registration), "cooling_off"))
    as_json = json.loads(_cli("status", registration, "--json"))
    assert [(s["id"], s["kind"]) for s in as_json["steps"]][1:4] == [
        ("collect_form", "wait"), ("assign_inspector", "human"), ("cooling_off", "timer")]
    assert as_json["business_key"] == "F8700-12-42" and as_json["steps"][3]["wake_at"] is not None

    _wake(registration)
    assert _line(_cli("status", registration), "cooling_off").endswith("slept 10m")
    assert _steps(registration)["cooling_off"].status == "done"


def test_a_timer_past_due_and_not_ended_says_so(registration: str) -> None:
    _through_the_form(registration)
    human = _pending(registration, "assign_inspector")
    oms.claim(human, "bob")
    complete_task(human, {"inspector": "bob"}, worker_id="bob")
    row = _timer(registration)
    late = row.wake_at + timedelta(minutes=2)
    assert row.light_now(late) == "yellow" and row.light_now(row.wake_at + timedelta(minutes=6)) == "red"
    from oms.cli.kinds import step_note

    step = _steps(registration)["cooling_off"]
    assert step_note(step, row, late).endswith("(2m ago: the next SLA scan ends it)")


def _handed_around(instance_id: str) -> None:
    """The inspection claimed by alice, released, claimed again (the same attempt started twice), then given to
    bob by a supervisor, who completes it."""
    human = _pending(instance_id, "assign_inspector")
    oms.claim(human, "alice")
    oms.release(human, "alice")
    oms.claim(human, "alice")
    oms.reassign(human, user="bob", by="dave")
    complete_task(human, {"inspector": "bob"}, worker_id="bob")


def test_history_tells_signals_claims_and_timers_in_words(registration: str) -> None:
    _through_the_form(registration)
    _handed_around(registration)
    _wake(registration)

    shown = _cli("history", registration)
    said = [re.split(r"\s{2,}", line.strip(), maxsplit=4)[1:] for line in shown.splitlines()[1:]]
    words = {(kind, details) for kind, *rest in said for details in [rest[-1] if rest else ""]}
    signal_id = oms.history(registration)[2].data["signal"]
    assert ("signal.received", f"signal form_submitted (id {signal_id}), kept until its step is ready") in words
    assert ("task.done", f"ended by signal form_submitted (id {signal_id})") in words
    assert ("task.released", "alice released it") in words
    assert ("task.released", "alice's claim ended: reassigned by dave") in words
    assert ("task.reassigned", "by dave: now for bob; it was held by alice") in words
    assert ("task.started", "held by bob, given by dave") in words
    assert ("task.done", "the timer ended after 10m") in words
    assert ("task.started", "worker_id=irs") in words  # other events: their fields, as before
    raw = json.loads(_cli("history", registration, "--json"))
    assert [e["data"] for e in raw if e["kind"] == "task.reassigned"] == [
        {"by": "dave", "users": "bob", "previous_holder": "alice"}]
    assert [e["data"] for e in raw if e["step_id"] == "cooling_off" and e["kind"] == "task.done"] == [
        {"slept": "10m"}]  # as the definition says it (it was "0:10:00")


def test_sla_summary_counts_people_signals_and_timers_like_any_step(registration: str) -> None:
    _through_the_form(registration)
    _handed_around(registration)
    summary = {s.step_id: s for s in oms.sla_summary()}
    assert {step: (s.kind, s.green + s.yellow + s.red) for step, s in summary.items()} == {
        "validate_tax_id": ("worker", 1), "collect_form": ("wait", 1), "assign_inspector": ("human", 1),
        "cooling_off": ("timer", 1)}
    form, person, timer = summary["collect_form"], summary["assign_inspector"], summary["cooling_off"]
    assert (form.queue_wait_p50_s, form.run_p50_s) == (None, None) and form.total_p50_s is not None
    assert person.queue_wait_p50_s is not None and person.run_p50_s is not None
    assert person.total_p50_s == pytest.approx(person.queue_wait_p50_s + person.run_p50_s)
    assert (timer.queue_wait_p50_s, timer.run_p50_s, timer.total_p50_s) == (None, None, None)  # still sleeping


def _rolled(at: datetime, name: str, **labels: str) -> float:
    """A counter or histogram sample as a scrape at ``at`` reports it (the events before ``at`` rolled up)."""
    found = metrics.snapshot(at + 2 * metrics.SETTLE).rolled
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_each_end_once_and_time_only_claims(registration: str) -> None:
    _through_the_form(registration)
    assert metrics.snapshot(utcnow()).open_steps[("registration", "assign_inspector", "green")] == 1
    _handed_around(registration)
    assert metrics.snapshot(utcnow()).open_steps[("registration", "cooling_off", "green")] == 1
    ended = _wake(registration)

    def step(name: str, which: str) -> float:
        return _rolled(ended, name, workflow="registration", step=which)

    for which in ("validate_tax_id", "collect_form", "assign_inspector", "cooling_off"):
        assert step("oms_steps_done_total", which) == 1, which
    assert step("oms_signals_received_total", "collect_form") == 1
    assert step("oms_claims_released_total", "assign_inspector") == 2  # alice's release, then the reassignment
    assert step("oms_reassignments_total", "assign_inspector") == 1
    assert step("oms_queue_wait_seconds_count", "assign_inspector") == 1  # one attempt, timed from its last claim
    assert step("oms_run_seconds_count", "assign_inspector") == 1
    for unclaimed in ("collect_form", "cooling_off"):  # ended from pending: nothing to time, nothing negative
        assert step("oms_queue_wait_seconds_count", unclaimed) == 0
        assert step("oms_run_seconds_count", unclaimed) == 0
    assert all(value >= 0 for (sample, _), value in metrics.snapshot(ended).rolled.items() if "_sum" in sample)


def test_doctor_does_not_fail_steps_that_wait_for_people_or_signals(registration: str) -> None:
    _through_the_form(registration)
    later = utcnow() + timedelta(hours=1)  # long past OMS_RECONCILE_AFTER, and no consumer
    checks = {check.name: check for check in doctor._topics(later, {})}
    human = checks["topic oms.human"]
    assert human.status == doctor.OK and human.detail.startswith("1 step(s) queued for people"), human
    assert checks["topic oms.wait"].detail.startswith("0 step(s) waiting for a signal")
    assert checks["topic oms.timer"].status == doctor.OK


def test_a_sleep_of_ten_business_days_ends_when_the_calendar_says(backend: Backend) -> None:
    FEDERAL.save()
    start = ny(2026, 11, 25, 9, 50)  # Wednesday before Thanksgiving
    iid = _start({"id": "cooling", "calendar": "us_federal",
                  "steps": [{"id": "cooling_off", "sleep": "10bd"}, {"id": "issue_permit", "sla": "1h"}]}, start)
    # Thursday 26 is a holiday, weekends are closed: Fri 27, Mon 30, Dec 1-4, 7-10: the tenth is Thursday 10
    due = ny(2026, 12, 10, 9, 50)
    assert _steps(iid)["cooling_off"].wake_at == due
    [row] = get_instance(iid).tasks
    assert (row.warn_at, row.expires_at) == (due + timedelta(minutes=1), due + timedelta(minutes=5))
    assert scan_sla(ny(2026, 12, 9, 17)).timers == 0
    assert scan_sla(due - timedelta(seconds=1)).timers == 0
    assert get_instance(iid).tasks[0].status == "pending"
    assert scan_sla(due).timers == 1
    info = get_instance(iid)
    assert [(t.step_id, t.status) for t in info.tasks] == [("cooling_off", "done"), ("issue_permit", "pending")]
    assert info.tasks[0].finished_at == due and info.tasks[0].light == "green"


def test_a_business_day_sleep_ends_in_working_time_from_the_next_opening(backend: Backend) -> None:
    FEDERAL.save()
    iid = _start({"id": "weekend", "calendar": "us_federal", "steps": [{"id": "cooling_off", "sleep": "4h"}]},
                 ny(2026, 12, 5, 11, 0))  # a Saturday: it counts from Monday's opening
    assert _steps(iid)["cooling_off"].wake_at == ny(2026, 12, 7, 13, 0)
