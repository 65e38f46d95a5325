"""``oms doctor``'s topic checks: a pull worker, which no broker but RabbitMQ shows, counts by its recent claims."""

from __future__ import annotations

from datetime import timedelta

from act import fetch_task
from oms import Workflow, start_workflow
from oms.durations import utcnow
from oms.ops import doctor
from oms.settings import get_settings

from ..conftest import Backend


def test_a_pull_worker_that_claimed_lately_is_its_topics_consumer(backend: Backend) -> None:
    Workflow(id="validation", steps=[{"id": "validate_tax_id", "sla": "2m"}]).save()
    start_workflow("validation", payload={})
    start_workflow("validation", payload={})
    assert fetch_task("validate_tax_id", max_wait=0, worker_id="tax-validator-1") is not None

    check = {c.name: c for c in doctor._topics(utcnow(), {})}["topic validate_tax_id"]
    assert check.status == doctor.OK, check
    assert "1 step(s) waiting" in check.detail
    assert "consumed by tax-validator-1 (claimed a step 0s ago)" in check.detail

    # its step has waited past OMS_RECONCILE_AFTER and the claim is older than that: a dead worker, no consumer
    later = utcnow() + timedelta(seconds=get_settings().reconcile_after + 5)
    check = {c.name: c for c in doctor._topics(later, {})}["topic validate_tax_id"]
    assert check.status == doctor.FAIL, check
    assert "no live consumer" in check.detail and "no step of it was claimed in the last 30s" in check.detail

    # nothing waits: a claim within RECENT_CLAIMS still names the worker, idle between steps
    second = fetch_task("validate_tax_id", max_wait=0, worker_id="tax-validator-1")
    assert second is not None
    idle = {c.name: c for c in doctor._topics(utcnow() + timedelta(minutes=5), {})}["topic validate_tax_id"]
    assert idle.status == doctor.OK and "tax-validator-1 (claimed a step 5m ago)" in idle.detail, idle
    gone = {c.name: c for c in doctor._topics(utcnow() + doctor.RECENT_CLAIMS + timedelta(seconds=1), {})}
    assert "no live consumer" in gone["topic validate_tax_id"].detail
