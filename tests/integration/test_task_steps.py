"""Task steps on real ``celery -A oms worker`` processes: a shop's Celery tasks (``tests/shop_tasks.py``) as steps.

Each counted task appends a line to a file per call: an attempt runs the function once,
whatever the task's own retry options, and the engine's retries are the only ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from oms import Workflow, get_instance, history, start_workflow
from oms.durations import utcnow
from oms.ops.reconcile import reconcile
from oms.settings import get_settings

from ..conftest import Backend
from ..workers import WorkerProcess, wait_finished

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(backend: Backend, tmp_path: Path) -> Iterator[WorkerProcess]:
    # "oms": where the engine's own app routes a task it has no route for; "adders": a step's own topic
    process = WorkerProcess(backend.env, tmp_path, ["oms", "adders"], modules="tests.shop_tasks")
    yield process
    process.stop()


def _calls(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _attempts(instance_id: str) -> int:
    return sum(1 for event in history(instance_id) if event.kind == "task.started")


def test_add_then_mul_gives_the_product_of_the_sum(backend: Backend, worker: WorkerProcess) -> None:
    Workflow(id="shop_order", steps=[
        {"id": "add", "task": "tests.shop_tasks.add", "sla": "1m", "topic": "adders"},
        {"id": "mul", "task": "tests.shop_tasks.mul", "sla": "1m"},
    ]).save()
    ids = [start_workflow("shop_order", payload={"x": 2, "y": 3}) for _ in range(3)]
    assert set(wait_finished(ids).values()) == {"done"}
    for instance_id in ids:
        info = get_instance(instance_id)
        assert info.results == {"add": {"value": 5}, "mul": {"value": 15}}
        assert [e.step_id for e in history(instance_id) if e.kind == "task.done"] == ["add", "mul"]


def test_a_fan_out_of_shop_tasks_runs_two_to_a_message_and_joins_once(backend: Backend,
                                                                       worker: WorkerProcess) -> None:
    legs = [f"add{n}" for n in range(4)]
    Workflow(id="shop_fan", steps=[
        *({"id": leg, "task": "tests.shop_tasks.add", "sla": "1m", "topic": "adders", "after": [], "chunk": 2}
          for leg in legs),
        {"id": "mul", "task": "tests.shop_tasks.mul", "sla": "1m", "after": legs},
    ]).save()
    instance_id = start_workflow("shop_fan", payload={"x": 2, "y": 3})
    assert wait_finished([instance_id]) == {instance_id: "done"}
    assert get_instance(instance_id).results == {**{leg: {"value": 5} for leg in legs}, "mul": {"value": 15}}
    events = history(instance_id)
    assert sorted(e.step_id for e in events if e.kind == "task.done") == sorted([*legs, "mul"])  # each once
    claims = {e.at for e in events if e.kind == "task.started" and e.step_id in legs}
    assert len(claims) == 2  # two messages, each claimed in one statement


def _one_step(workflow_id: str, step: dict[str, Any], payload: dict[str, Any]) -> str:
    Workflow(id=workflow_id, steps=[{"id": "s", **step}]).save()
    return start_workflow(workflow_id, payload=payload)


def test_the_engine_owns_retries_and_time_limits_of_a_task(backend: Backend, worker: WorkerProcess,
                                                           tmp_path: Path) -> None:
    counters = {name: tmp_path / f"{name}.calls" for name in ("flaky", "bound", "own_limit", "sla", "fails")}

    def payload(name: str, **more: Any) -> dict[str, Any]:
        return {"counter": str(counters[name]), **more}

    ids = {
        # autoretry_for, max_retries=2: the step takes retries=2, and each attempt calls it once
        "flaky": _one_step("t_flaky", {"task": "tests.shop_tasks.flaky", "sla": "1m"}, payload("flaky")),
        # bind=True and self.retry() on the first call: that attempt fails, the step's retry runs it again
        "bound": _one_step("t_bound", {"task": "tests.shop_tasks.bound", "sla": "1m", "retries": 1}, payload("bound")),
        # its own soft_time_limit (1 s) comes before the SLA: a failed attempt, retried per the step
        "own_limit": _one_step("t_own", {"task": "tests.shop_tasks.slow", "sla": "1m", "retries": 1},
                               payload("own_limit", seconds=5)),
        # the SLA (2 s) comes before its own soft_time_limit (30 s): a breach, as for any push step
        "sla": _one_step("t_sla", {"task": "tests.shop_tasks.patient", "sla": "2s"}, payload("sla", seconds=6)),
        # Celery would retry it twice itself; the step says no retry: one call, one failure
        "fails": _one_step("t_fails", {"task": "tests.shop_tasks.flaky", "sla": "1m", "retries": 0},
                           payload("fails", fail_times=5)),
    }
    statuses = wait_finished(list(ids.values()), timeout=90)
    assert {name: statuses[i] for name, i in ids.items()} == {
        "flaky": "done", "bound": "done", "own_limit": "failed", "sla": "failed", "fails": "failed"}
    assert {name: _calls(counter) for name, counter in counters.items()} == {
        "flaky": 3, "bound": 2, "own_limit": 2, "sla": 1, "fails": 1}
    assert {name: _attempts(i) for name, i in ids.items()} == {
        "flaky": 3, "bound": 2, "own_limit": 2, "sla": 1, "fails": 1}
    assert Workflow.load("t_flaky").steps[0].retries == 2
    assert get_instance(ids["flaky"]).results == {"s": {"calls": 3}}
    assert get_instance(ids["bound"]).results == {"s": {"calls": 2, "task_id_seen": True, "called_directly": True}}
    assert "ran past its own soft_time_limit (1s)" in (get_instance(ids["own_limit"]).error or "")
    assert "SLA" in (get_instance(ids["sla"]).error or "")
    assert any(e.kind == "task.sla_violated" for e in history(ids["sla"]))
    assert not any(e.kind == "task.sla_violated" for e in history(ids["own_limit"]))
    assert "RuntimeError: call 1 fails" in (get_instance(ids["fails"]).error or "")


def test_a_task_whose_module_a_worker_lacks_waits_for_one_that_has_it(backend: Backend, tmp_path: Path) -> None:
    Workflow(id="t_deploy", steps=[{"id": "add", "task": "tests.shop_tasks.add", "sla": "1m"}]).save()
    instance_id = start_workflow("t_deploy", payload={"x": 2, "y": 3})
    # a worker on the task's queue without its module (an old one mid-deploy, another team's): it claims nothing
    lacking = WorkerProcess(backend.env, tmp_path, ["oms"], modules=None, name="lacking")
    try:
        deadline = time.monotonic() + 30
        while "not registered on worker lacking@" not in lacking.log.read_text():
            assert time.monotonic() < deadline, lacking.log.read_text()
            time.sleep(0.1)
    finally:
        lacking.stop()
    assert "left queued for a worker that has it" in lacking.log.read_text()
    assert get_instance(instance_id).tasks[0].status == "pending"
    assert _attempts(instance_id) == 0
    # the reconciler publishes it again, and a worker that has the task runs it, once
    process = WorkerProcess(backend.env, tmp_path, ["oms"], modules="tests.shop_tasks")
    try:
        assert reconcile(utcnow() + timedelta(seconds=get_settings().reconcile_after + 1)) == 1
        # a task that is registered, but the payload lacks its argument: that fails the attempt
        unbound = _one_step("t_unbound", {"task": "tests.shop_tasks.add", "sla": "1m"}, {"x": 1})
        assert wait_finished([instance_id, unbound]) == {instance_id: "done", unbound: "failed"}
    finally:
        process.stop()
    assert get_instance(instance_id).results == {"add": {"value": 5}}
    assert _attempts(instance_id) == 1
    assert "task 'tests.shop_tasks.add' needs argument 'y'" in (get_instance(unbound).error or "")
