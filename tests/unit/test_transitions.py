"""The state machine and event log, on SQLite and PostgreSQL, with the clock passed in."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from oms import InvalidPayload, UnknownInstance, UnknownWorkflow, Workflow, get_instance, history, start_workflow
from oms.engine import door
from oms.engine.door import Task
from oms.engine.starts import start_instance
from oms.exceptions import InvalidArgument, InvalidTransition, TaskAlreadyFinished, TaskNotClaimed, TaskNotFound
from oms.states import InstanceStatus, TaskStatus, instance_event, task_event
from oms.store.catalog import load_definition
from oms.store.db import transaction
from oms.store.tables import EventRow, InstanceRow, TaskRow

from ..conftest import EPA, Backend

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _start(workflow: dict[str, object], now: datetime = T0) -> str:
    Workflow(**workflow).save()  # type: ignore[arg-type]
    with transaction() as s:
        definition, version = load_definition(s, str(workflow["id"]))
        instance, _ = start_instance(s, definition, version, {"form_id": "F-1"}, now)
    return instance.id


def _kinds(instance_id: str) -> list[tuple[str, str | None, int | None]]:
    return [(e.kind, e.step_id, e.attempt) for e in history(instance_id)]


def _claim(instance_id: str, index: int, now: datetime = T0) -> Task | None:
    return door.claim_step(instance_id, index, "w1", now=now)


def test_a_workflow_runs_to_done_with_one_event_per_transition(backend: Backend) -> None:
    iid = _start(EPA)
    for index in range(4):
        task = _claim(iid, index)
        assert task is not None and task.attempt == 1
        door.complete(task.id, {"n": index}, now=T0)
    assert _kinds(iid) == [("workflow.started", None, None)] + [
        (kind, step["id"], 1)  # type: ignore[index]
        for step in EPA["steps"]  # type: ignore[attr-defined]
        for kind in ("task.queued", "task.started", "task.done")
    ] + [("workflow.done", None, None)]
    with transaction() as s:
        inst = s.get_one(InstanceRow, iid)
        assert inst.status == "done"
        assert inst.results == {"collect_form": {"n": 0}, "validate_tax_id": {"n": 1}, "charge_fee": {"n": 2},
                                "assign_inspector": {"n": 3}}


def test_sla_clock_starts_when_the_step_is_queued(backend: Backend) -> None:
    iid = _start(EPA)
    task = _claim(iid, 0)
    assert task is not None
    door.extend(task.id, "1h", now=T0)  # the worker's heartbeats keep its claim for its 3 minutes
    door.complete(task.id, None, now=T0 + timedelta(minutes=3))
    with transaction() as s:
        second = s.scalars(select(TaskRow).where(TaskRow.instance_id == iid, TaskRow.step_index == 1)).one()
    assert second.ready_at == T0 + timedelta(minutes=3)
    assert second.expires_at == second.ready_at + timedelta(minutes=2)


def test_a_step_is_claimed_once_and_finished_once(backend: Backend) -> None:
    iid = _start(EPA)
    task = _claim(iid, 0)
    assert task is not None
    assert _claim(iid, 0) is None  # a redelivered message finds nothing to claim
    assert door.complete(task.id, {"ok": True}, now=T0).repeat is False
    before = len(_kinds(iid))
    # its holder sending the same again is told it is done (a repeat); anyone else, or anything else, is refused
    assert door.complete(task.id, {"ok": True}, worker_id=task.worker_id, now=T0) == door.Ended(repeat=True)
    for refused in (lambda: door.complete(task.id, {"ok": True}, worker_id="w2", now=T0),
                    lambda: door.complete(task.id, {"ok": False}, worker_id=task.worker_id, now=T0),
                    lambda: door.complete(task.id, None, worker_id=task.worker_id, now=T0),
                    lambda: door.fail(task.id, "late", worker_id=task.worker_id, now=T0)):
        with pytest.raises(TaskAlreadyFinished, match="already done"):
            refused()
    assert len(_kinds(iid)) == before
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(EventRow).where(EventRow.kind == "task.done")) == 1


def test_unclaimed_and_unknown_tasks_are_refused(backend: Backend) -> None:
    iid = _start(EPA)
    with transaction() as s:
        pending = s.scalars(select(TaskRow).where(TaskRow.instance_id == iid)).one()
    with pytest.raises(TaskNotClaimed, match="pending, not running"):
        door.complete(pending.id, None, now=T0)
    with pytest.raises(TaskNotFound, match="unknown task 'tk-0000"):
        door.complete("tk-" + "0" * 32, None, now=T0)
    with pytest.raises(InvalidArgument, match="malformed task id 'tk-nope'"):
        door.complete("tk-nope", None, now=T0)
    with pytest.raises(InvalidArgument, match="malformed instance id"):
        get_instance("wf-1; DROP TABLE oms_tasks")
    with pytest.raises(UnknownInstance, match="unknown workflow instance 'wf-0000"):
        get_instance("wf-" + "0" * 32)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_the_holders_repeat_is_a_success_after_the_instance_moved_on_or_ended(
        request: pytest.FixtureRequest, dialect: str) -> None:
    request.getfixturevalue(f"{dialect}_backend")  # each store reads the finished task's state
    iid = _start({"id": "r", "steps": [{"id": "a", "sla": "1m", "retries": 1}, {"id": "b", "sla": "1m"}]})
    first = _claim(iid, 0)
    assert first is not None
    retried = door.fail(first.id, "IRS down", worker_id="w1", now=T0)
    assert retried.repeat is False and retried.retry is not None
    assert door.fail(first.id, "IRS down", worker_id="w1", now=T0) == door.Ended(repeat=True)  # not retried again
    with pytest.raises(TaskAlreadyFinished):
        door.fail(first.id, "another reason", worker_id="w1", now=T0)
    second = _claim(iid, 0, T0 + timedelta(minutes=1))
    assert second is not None and second.attempt == 2
    door.complete(second.id, {"n": 1}, worker_id="w1", now=T0 + timedelta(minutes=1))
    moved_on = _claim(iid, 1, T0 + timedelta(minutes=1))
    assert moved_on is not None  # the instance is at step b
    before = len(_kinds(iid))
    assert door.complete(second.id, {"n": 1}, worker_id="w1").repeat is True
    door.complete(moved_on.id, None, worker_id="w1", now=T0 + timedelta(minutes=1))
    assert get_instance(iid).status == "done"
    assert door.complete(second.id, {"n": 1}, worker_id="w1").repeat is True  # the instance has ended
    assert door.fail(first.id, "IRS down", worker_id="w1").repeat is True
    assert len(_kinds(iid)) == before + 2  # b's task.done and workflow.done: the repeats logged nothing
    assert get_instance(iid).results == {"a": {"n": 1}}


def test_failures_retry_with_backoff_then_fail_the_instance(backend: Backend) -> None:
    wf = {"id": "r", "steps": [{"id": "s", "sla": "1m", "retries": 2, "retry_backoff": "10s"}]}
    iid = _start(wf)
    now = T0
    for attempt, delay in ((1, 10), (2, 20)):
        task = _claim(iid, 0, now)
        assert task is not None and task.attempt == attempt
        dispatch = door.fail(task.id, f"boom {attempt}", now=now).retry
        assert dispatch is not None and dispatch.countdown == delay and dispatch.from_step == 0
        assert _claim(iid, 0, now + timedelta(seconds=delay - 2)) is None  # not due yet
        now += timedelta(seconds=delay)
    task = _claim(iid, 0, now)
    assert task is not None and task.attempt == 3
    assert door.fail(task.id, "boom 3", now=now).retry is None
    assert _kinds(iid) == [
        ("workflow.started", None, None), ("task.queued", "s", 1), ("task.started", "s", 1), ("task.failed", "s", 1),
        ("task.retried", "s", 2), ("task.started", "s", 2), ("task.failed", "s", 2),
        ("task.retried", "s", 3), ("task.started", "s", 3), ("task.failed", "s", 3), ("workflow.failed", None, None),
    ]
    with transaction() as s:
        inst = s.get_one(InstanceRow, iid)
        assert inst.status == "failed" and "boom 3" in (inst.error or "")


def test_illegal_transitions_are_refused() -> None:
    with pytest.raises(InvalidTransition, match="cannot go from 'done' to 'running'"):
        task_event(TaskStatus.DONE, TaskStatus.RUNNING)
    with pytest.raises(InvalidTransition, match="cannot go from 'pending' to 'lapsed'"):
        task_event(TaskStatus.PENDING, TaskStatus.LAPSED)
    assert task_event(TaskStatus.PENDING, TaskStatus.DONE) == "task.done"  # a signal came, a timer ran out
    with pytest.raises(InvalidTransition, match="cannot go from 'done' to 'running'"):
        instance_event(InstanceStatus.DONE, InstanceStatus.RUNNING)
    assert task_event(TaskStatus.RUNNING, TaskStatus.CANCELLED) == "task.cancelled"
    assert task_event(None, TaskStatus.PENDING, retried=True) == "task.retried"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["a"], "payload must be a JSON object"),
        ("form", "payload must be a JSON object"),
        ({"when": datetime(2026, 1, 1)}, "payload is not JSON"),
        ({"x": float("nan")}, "payload is not JSON"),
        ({"x": {1, 2}}, "payload is not JSON"),
        ({"blob": "x" * (1024 * 1024)}, "over the limit of 1048576"),
    ],
)
def test_bad_payloads_are_refused_at_the_call_and_store_nothing(backend: Backend, payload: object,
                                                               message: str) -> None:
    Workflow(**EPA).save()
    with pytest.raises(InvalidPayload, match=message):
        start_workflow("epa_waste_reg", payload=payload)  # type: ignore[arg-type]
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(EventRow)) == 0


def test_unknown_workflow_is_refused_by_name(backend: Backend) -> None:
    with pytest.raises(UnknownWorkflow, match="unknown workflow 'epa_typo'"):
        start_workflow("epa_typo", payload={})


def test_a_running_instance_keeps_its_version(backend: Backend) -> None:
    iid = start_workflow(*("epa_waste_reg",), payload={}) if Workflow(**EPA).save() else ""
    Workflow(id="epa_waste_reg", steps=[{"id": "collect_form", "sla": "1m"}]).save()
    with transaction() as s:
        assert s.get_one(InstanceRow, iid).version == 1
    assert start_workflow("epa_waste_reg", payload={}).startswith("wf-")


def test_cancel_ends_open_steps_and_refuses_late_reports(backend: Backend) -> None:
    from oms import cancel_workflow
    from oms.exceptions import InstanceFinished

    iid = _start(EPA)
    task = _claim(iid, 0)
    assert task is not None
    cancel_workflow(iid, "citizen withdrew")
    cancel_workflow(iid)  # again: nothing changes
    with pytest.raises(InstanceFinished, match="is cancelled"):
        door.complete(task.id, None, now=T0)
    assert _kinds(iid)[-2:] == [("task.cancelled", "collect_form", 1), ("workflow.cancelled", None, None)]
    assert _claim(iid, 0) is None


def test_retry_resumes_a_failed_instance_from_its_failed_step(backend: Backend) -> None:
    from oms import retry_workflow

    iid = _start(EPA)
    for index in range(2):
        task = _claim(iid, index)
        assert task is not None
        if index == 0:
            door.complete(task.id, None, now=T0)
        else:
            door.fail(task.id, "IRS down", now=T0)
    with transaction() as s:
        assert s.get_one(InstanceRow, iid).status == "failed"
    retry_workflow(iid)
    task = _claim(iid, 1, datetime.now(UTC))
    assert task is not None and task.attempt == 2 and task.step_id == "validate_tax_id"
    assert _kinds(iid)[-3:] == [("workflow.resumed", None, None), ("task.retried", "validate_tax_id", 2),
                                ("task.started", "validate_tax_id", 2)]
    with pytest.raises(InvalidTransition), transaction() as s:
        from oms.engine.control import rerun

        rerun(s, iid, T0)


def test_an_idempotency_key_returns_the_instance_it_started(backend: Backend) -> None:
    from oms import start_workflows
    from oms.engine.starts import start
    from oms.exceptions import IdempotencyConflict

    Workflow(**EPA).save()
    first, created = start("epa_waste_reg", {"form_id": "F-1"}, idempotency_key="portal-req-42")
    assert created
    assert start("epa_waste_reg", {"form_id": "F-1"}, idempotency_key="portal-req-42") == (first, False)
    assert start_workflow("epa_waste_reg", {"form_id": "F-1"}, idempotency_key="portal-req-42") == first
    with pytest.raises(IdempotencyConflict, match=f"'portal-req-42' of workflow 'epa_waste_reg' already started "
                                                  f"{first} with another payload"):
        start_workflow("epa_waste_reg", {"form_id": "F-2"}, idempotency_key="portal-req-42")
    other = start_workflow("epa_waste_reg", {"form_id": "F-1"}, idempotency_key="portal-req-43")
    assert other != first and len(start_workflows("epa_waste_reg", [{}, {}])) == 2
    with pytest.raises(InvalidArgument, match="idempotency key ''"):
        start_workflow("epa_waste_reg", {}, idempotency_key="")
    assert [e.kind for e in history(first)] == ["workflow.started", "task.queued"]  # started once


def test_concurrent_starts_with_one_key_start_one_instance(backend: Backend) -> None:
    import threading

    from oms.engine.starts import start

    Workflow(**EPA).save()
    barrier, found = threading.Barrier(4), []

    def go() -> None:
        barrier.wait()
        found.append(start("epa_waste_reg", {"form_id": "F-9"}, idempotency_key="retry-storm"))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({instance_id for instance_id, _ in found}) == 1
    assert sorted(created for _, created in found) == [False, False, False, True]
