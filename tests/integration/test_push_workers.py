"""Workflows on real ``celery worker`` processes: the embedded default and PostgreSQL + Redis."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import oms
from oms import Workflow, get_instance, history, start_workflow
from oms.celery.compiler import compile_chain

from ..conftest import EPA, Backend, _configure
from ..handlers import EPA_STEPS
from ..services import RABBITMQ_URL
from ..workers import WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

EPA_EVENTS = (
    ["workflow.started"]
    + [kind for _ in EPA_STEPS for kind in ("task.queued", "task.started", "task.done")]
    + ["workflow.done"]
)


@pytest.fixture
def worker(backend: Backend, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(backend.env, tmp_path, [*EPA_STEPS, "flaky", "refuse"])
    yield process
    process.stop()


def _assert_epa_ran(instance_id: str) -> None:
    events = history(instance_id)
    assert [e.kind for e in events] == EPA_EVENTS
    assert [e.step_id for e in events if e.kind == "task.done"] == list(EPA_STEPS)
    info = get_instance(instance_id)
    assert info.status == "done" and info.current_step == "assign_inspector"
    # each step saw the payload and the results of the steps before it
    for i, step in enumerate(EPA_STEPS):
        assert info.results[step] == {"step": step, "form_id": "F8700-12-42", "seen": sorted(EPA_STEPS[:i])}


def test_the_epa_workflow_runs_to_done(backend: Backend, worker: WorkerProcess) -> None:
    Workflow(**EPA).save()
    ids = [start_workflow("epa_waste_reg", payload={"form_id": "F8700-12-42"}) for _ in range(5)]
    assert all(i.startswith("wf-") and len(i) == 35 for i in ids)
    assert set(wait_finished(ids).values()) == {"done"}
    for instance_id in ids:
        _assert_epa_ran(instance_id)


def test_the_epa_workflow_runs_on_rabbitmq(postgres_url: str, tmp_path: Path) -> None:
    backend = _configure("rabbitmq", postgres_url, RABBITMQ_URL, tmp_path)
    from sqlalchemy import text

    from oms.store.db import transaction

    with transaction() as session:
        session.execute(text("TRUNCATE oms_events, oms_signals, oms_tasks, oms_instances, oms_definitions"))
    process = WorkerProcess(backend.env, tmp_path, list(EPA_STEPS))
    try:
        Workflow(**EPA).save()
        instance_id = start_workflow("epa_waste_reg", payload={"form_id": "F8700-12-42"})
        wait_finished([instance_id])
        _assert_epa_ran(instance_id)
    finally:
        process.stop()


def test_a_raising_handler_is_retried_then_fails_the_instance(backend: Backend, worker: WorkerProcess) -> None:
    Workflow(id="flaky_wf", steps=[{"id": "flaky", "sla": "1m", "retries": 2, "retry_backoff": "0.2s"}]).save()
    recovers = start_workflow("flaky_wf", payload={"fail_until": 2})
    gives_up = start_workflow("flaky_wf", payload={"fail_until": 99})
    assert wait_finished([recovers, gives_up]) == {recovers: "done", gives_up: "failed"}
    assert [e.kind for e in history(recovers)] == [
        "workflow.started", "task.queued", "task.started", "task.failed", "task.retried", "task.started",
        "task.failed", "task.retried", "task.started", "task.done", "workflow.done",
    ]
    failed = history(gives_up)
    assert [e.kind for e in failed][-2:] == ["task.failed", "workflow.failed"]
    assert [e.attempt for e in failed if e.kind == "task.failed"] == [1, 2, 3]
    assert "RuntimeError: flaky failure on attempt 3" in (get_instance(gives_up).error or "")


def test_a_handler_returning_fail_fails_the_step(backend: Backend, worker: WorkerProcess) -> None:
    Workflow(id="refusing", steps=[{"id": "refuse", "sla": "1m"}]).save()
    instance_id = start_workflow("refusing", payload={})
    assert wait_finished([instance_id]) == {instance_id: "failed"}
    assert "handler returned 'fail'" in (get_instance(instance_id).error or "")


@pytest.mark.parametrize("raises", [False, True])
def test_an_unstorable_result_fails_its_attempt_once_with_the_reason(backend: Backend, tmp_path: Path,
                                                                    raises: bool) -> None:
    """Regression (issue 12, 4.4): on PostgreSQL the step ran 3 times and failed as ``worker_lost``."""
    log = tmp_path / "runs.log"
    process = WorkerProcess(backend.env, tmp_path, ["unstorable"])
    try:
        Workflow(id="nul", steps=[{"id": "unstorable", "sla": "1m"}]).save()
        instance_id = start_workflow("nul", payload={"log": str(log), "raise": raises})
        assert wait_finished([instance_id], timeout=30) == {instance_id: "failed"}
        time.sleep(1)  # nothing runs it again
    finally:
        process.stop()
    assert len(log.read_text().splitlines()) == 1
    [task] = get_instance(instance_id).tasks
    assert task.status == "failed" and task.error != "worker_lost"
    if raises:
        assert task.error is not None and task.error.startswith("ValueError: bad byte \ufffd in the form; xxx")
        assert len(task.error) == 10_000 and task.error.endswith("…")  # OMS_MAX_REASON_CHARS
    else:
        assert task.error == ("the handler's result cannot be stored: result['text'] holds a NUL character at "
                              "position 3: it cannot be stored")
    assert [e.kind for e in history(instance_id)][-2:] == ["task.failed", "workflow.failed"]


def test_a_message_delivered_twice_completes_each_step_once(backend: Backend, tmp_path: Path) -> None:
    Workflow(**EPA).save()
    instance_id = start_workflow("epa_waste_reg", payload={"form_id": "F8700-12-42"})
    # a second copy of the whole chain, as a broker redelivery or a re-publish would make
    compile_chain(oms.app, Workflow(**EPA), instance_id).apply_async()
    process = WorkerProcess(backend.env, tmp_path, list(EPA_STEPS))
    try:
        wait_finished([instance_id])
        # the duplicate copy reaches the worker too, and must change nothing
        deadline = time.monotonic() + 10
        while process.log.read_text().count("act.collect_form[") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.log.read_text().count("act.collect_form[") >= 2, "the duplicate was never delivered"
        time.sleep(0.5)
    finally:
        process.stop()
    kinds = Counter(e.kind for e in history(instance_id))
    assert kinds["task.done"] == 4 and kinds["task.started"] == 4 and kinds["workflow.done"] == 1
    _assert_epa_ran(instance_id)


def test_finished_steps_leave_no_time_limit_timers_behind(postgres_backend: Backend, tmp_path: Path) -> None:
    """On an event-loop transport (Redis) the prefork pool arms its time limits on the loop's timer."""
    env = {**postgres_backend.env, "OMS_TIMER_COMPACT_INTERVAL": "1"}
    process = WorkerProcess(env, tmp_path, list(EPA_STEPS))
    try:
        Workflow(**EPA).save()  # SLAs of minutes to 48 hours: timers that would outlive the test
        ids = [start_workflow("epa_waste_reg", payload={"form_id": "F8700-12-42"}) for _ in range(10)]
        wait_finished(ids)
        deadline = time.monotonic() + 10
        while "timer compaction dropped" not in process.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        process.stop()
    import re

    dropped = [int(n) for n in re.findall(r"timer compaction dropped (\d+)", process.log.read_text())]
    assert sum(dropped) >= 40  # a soft and a hard timer for each of 40 steps, all cancelled


def test_a_handler_that_hands_off_to_a_person_pauses_the_clock(backend: Backend, tmp_path: Path) -> None:
    from act import complete_task, resume_clock

    process = WorkerProcess(backend.env, tmp_path, ["await_citizen", "collect_form"])
    try:
        Workflow(id="citizen_wf", steps=[{"id": "await_citizen", "sla": "1h"},
                                         {"id": "collect_form", "sla": "1m"}]).save()
        instance_id = start_workflow("citizen_wf", payload={"form_id": "F-1"})
        deadline = time.monotonic() + 30
        while not any(e.kind == "task.clock_paused" for e in history(instance_id)):
            assert time.monotonic() < deadline, [e.kind for e in history(instance_id)]
            time.sleep(0.1)
        [task] = get_instance(instance_id).tasks
        assert (task.status, task.pause_reason, task.worker_id) == ("running", "waiting for citizen", None)
        assert resume_clock(task.id) is True
        complete_task(task.id, {"answer": "here"})  # the portal, on the citizen's answer: no lease to hold
        assert wait_finished([instance_id]) == {instance_id: "done"}
        kinds = [e.kind for e in history(instance_id)]
        assert kinds.count("task.done") == 2 and "task.clock_resumed" in kinds
    finally:
        process.stop()
