"""People in the loop end to end: the EPA registration of ``examples/workflows/epa_people.yaml`` with real
``celery worker`` and ``celery beat`` processes, on PostgreSQL + Redis and on SQLite + the filesystem broker.

The portal signals the citizen's form by its number (the business key), workers run the
machine steps, an inspector claims her step from her inbox and completes it with the
form, beat's SLA scan ends the cooling-off timer, and a worker issues the permit.
The timer sleeps 3 s in wall time here (``10bd`` under the agency's calendar in the
example; ``tests/unit/test_people_reads.py`` holds that one to the calendar).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

import oms
from act import complete_task
from oms import Calendar, InstanceFinished, Workflow, get_instance, history
from oms.durations import utcnow
from oms.model.files import read_definition
from oms.store import tokens

from ..conftest import Backend
from ..invariants import assert_consistent
from ..workers import ROOT, BeatProcess, WorkerProcess, wait_finished
from .test_api_server import ApiProcess

pytestmark = pytest.mark.integration

WORKFLOW = "epa_waste_reg"
FORM = {"epa_id": "TXD000012345", "facility": "Acme Plating, 12 Mill Road"}
INTERVAL = 1.0  # seconds between beat's SLA scans
SLEEP = timedelta(seconds=3)


def _definition() -> dict[str, Any]:
    """The example's registration, its cooling-off period three seconds of wall time."""
    spec: dict[str, Any] = read_definition(ROOT / "examples/workflows/epa_people.yaml")
    [timer] = [step for step in spec["steps"] if step["id"] == "cooling_off"]
    timer["sleep"] = "3s"
    del timer["calendar"]
    return spec


@dataclass
class Portal:
    """The citizen portal: a real ``oms api`` process and a ``signaller`` token."""

    api: ApiProcess
    headers: dict[str, str]

    def signal(self, business_key: str, data: dict[str, Any], *, idempotency_key: str) -> httpx.Response:
        """The portal's one call: the form ``form_submitted`` for the registration with this form number."""
        return httpx.post(f"{self.api.url}/v1/workflows/{WORKFLOW}/signals/form_submitted", headers=self.headers,
                          json={"business_key": business_key, "data": data, "idempotency_key": idempotency_key})


def _until(what: str, found: Any, timeout: float = 30) -> Any:
    """Poll ``found()`` until it returns something true; return it (failing the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout}s")


@pytest.fixture
def portal(backend: Backend, tmp_path: Path) -> Iterator[Portal]:
    """The registration saved, an inspector, a worker for the machine steps and the engine's queue, beat, and the
    HTTP API the portal signals through."""
    Calendar.from_file(ROOT / "examples/calendars/epa_business.yaml").save()
    Workflow(**_definition()).save()
    oms.create_user("alice", ["inspectors"], email="alice@epa.example")
    env = {**backend.env, "OMS_SLA_SCAN_INTERVAL": str(INTERVAL)}
    secret, _ = tokens.create("signaller", name="portal")
    worker = WorkerProcess(env, tmp_path, ["oms", "validate_tax_id", "charge_fee", "issue_permit"],
                           modules="tests.handlers,examples.workers.permits")
    beat = BeatProcess(env, tmp_path)
    try:
        api = ApiProcess(backend, tmp_path)
        try:
            yield Portal(api, {"Authorization": f"Bearer {secret}"})
        finally:
            api.stop()
    finally:
        beat.stop()
        worker.stop()


def _inspect(instance_id: str) -> str:
    """Alice finds the case in her inbox once the machine steps are done, claims it and completes it."""
    [item] = _until("the inspection in alice's inbox",
                    lambda: [i for i in oms.inbox("alice") if i.instance_id == instance_id])
    assert (item.step_id, item.business_key, item.actionable) == ("assign_inspector", "F8700-12-42", True)
    task = oms.claim(item.task_id, "alice")
    assert task.results["collect_form"] == FORM and set(task.results) == {"collect_form", "validate_tax_id",
                                                                          "charge_fee"}
    complete_task(item.task_id, {"inspector": "alice", "visit_on": "2026-12-10"}, worker_id="alice")
    return item.task_id


def test_a_registration_runs_through_the_portal_a_person_and_a_timer(portal: Portal) -> None:
    instance_id = oms.start_workflow(WORKFLOW, {"form_id": "F8700-12-42"}, business_key="F8700-12-42")
    with pytest.raises(oms.BusinessKeyInUse, match=instance_id):
        oms.start_workflow(WORKFLOW, {"form_id": "F8700-12-42"}, business_key="F8700-12-42")
    sent = portal.signal("F8700-12-42", FORM, idempotency_key="portal-F8700-12-42-1")
    assert sent.status_code == 202, sent.text
    receipt = sent.json()
    assert receipt["instance_id"] == instance_id and receipt["task_id"] is not None
    again = portal.signal("F8700-12-42", FORM, idempotency_key="portal-F8700-12-42-1")  # the portal retried
    assert again.status_code == 200 and (again.json()["signal_id"], again.json()["new"]) == (
        receipt["signal_id"], False)

    _inspect(instance_id)
    timer = _until("the cooling-off timer", lambda: [t for t in get_instance(instance_id).tasks
                                                     if t.step_id == "cooling_off"])[0]
    assert timer.wake_at == timer.ready_at + SLEEP
    assert wait_finished([instance_id], timeout=60) == {instance_id: "done"}

    info = get_instance(instance_id)
    steps = {step.id: step for step in info.steps}
    assert [steps[s].kind for s in steps] == ["wait", "worker", "worker", "human", "timer", "worker"]
    assert all(step.status == "done" for step in info.steps)
    assert info.results["collect_form"] == FORM
    assert info.results["issue_permit"] == {"permit": "P-F8700-12-42", "inspector": "alice", "visited": "2026-12-10"}
    [ended] = [t for t in info.tasks if t.step_id == "cooling_off"]
    assert ended.wake_at is not None and ended.finished_at is not None
    assert timedelta(0) <= ended.finished_at - ended.wake_at <= timedelta(seconds=INTERVAL + 2)
    assert ended.light == "green"
    [person] = [t for t in info.tasks if t.step_id == "assign_inspector"]
    assert person.worker_id == "alice"

    events = history(instance_id)
    done = [e.step_id for e in events if e.kind == "task.done"]
    assert done == ["collect_form", "validate_tax_id", "charge_fee", "assign_inspector", "cooling_off",
                    "issue_permit"]
    [signalled] = [e for e in events if e.kind == "signal.received"]
    assert (signalled.step_id, signalled.data["name"]) == ("collect_form", "form_submitted")
    assert [e.data for e in events if e.kind == "task.done" and e.step_id == "cooling_off"] == [{"slept": "3s"}]
    assert [e.data for e in events if e.kind == "task.started" and e.step_id == "assign_inspector"] == [
        {"worker_id": "alice"}]
    assert_consistent([instance_id])
    late = portal.signal("F8700-12-42", FORM, idempotency_key="portal-F8700-12-42-2")  # done: a late form is refused
    assert (late.status_code, late.json()["error"]) == (409, "InstanceFinished")
    assert oms.start_workflow(WORKFLOW, {"form_id": "F8700-12-42"}, business_key="F8700-12-42") != instance_id


def test_a_cancelled_registration_refuses_signals_and_its_timer_never_fires(portal: Portal) -> None:
    withdrawn = oms.start_workflow(WORKFLOW, {"form_id": "F8700-12-43"}, business_key="F8700-12-43")
    oms.cancel_workflow(withdrawn, "the facility withdrew its registration")
    refused = portal.signal("F8700-12-43", FORM, idempotency_key="portal-F8700-12-43-1")
    assert (refused.status_code, refused.json()["error"]) == (409, "InstanceFinished")
    with pytest.raises(InstanceFinished):
        oms.signal(withdrawn, "form_submitted", FORM)

    cooling = oms.start_workflow(WORKFLOW, {"form_id": "F8700-12-42"}, business_key="F8700-12-42")
    assert portal.signal("F8700-12-42", FORM, idempotency_key="portal-F8700-12-42-1").status_code == 202
    _inspect(cooling)
    timer = _until("the cooling-off timer", lambda: [t for t in get_instance(cooling).tasks
                                                     if t.step_id == "cooling_off"])[0]
    oms.cancel_workflow(cooling, "the permit was refused during the cooling-off period")
    assert timer.wake_at is not None
    time.sleep(max((timer.wake_at - utcnow()).total_seconds(), 0) + 3 * INTERVAL)
    info = get_instance(cooling)
    assert info.status == "cancelled"
    assert [(t.step_id, t.status) for t in info.tasks][-1] == ("cooling_off", "cancelled")
    kinds = [(e.kind, e.step_id) for e in history(cooling)]
    assert ("task.done", "cooling_off") not in kinds and ("task.cancelled", "cooling_off") in kinds
    assert all(step != "issue_permit" for _, step in kinds)
    assert_consistent([withdrawn, cooling], final="cancelled")
