"""Parallel steps on real ``celery worker`` processes: a diamond whose branches meet, a map, a failing branch.

The join is decided in the transaction that finishes the last predecessor: under a
barrier that makes two branches on two workers finish within a millisecond of each
other, it still fires exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import oms
from oms import Workflow, get_instance, history, retry_workflow, scan_sla, start_workflow
from oms.ops.reconcile import reconcile
from oms.store.db import transaction
from oms.store.tables import EventRow, TaskRow

from ..conftest import Backend
from ..workers import WorkerProcess, stop_all, wait_finished

pytestmark = pytest.mark.integration

DIAMOND = {"id": "fan", "steps": [
    {"id": "a", "topic": "fan_a", "sla": "1m"},
    {"id": "b", "topic": "fan_b", "sla": "1m"},
    {"id": "c", "topic": "fan_c", "sla": "1m", "after": ["a"]},
    {"id": "d", "topic": "fan_d", "sla": "1m", "after": ["b", "c"]},
]}


@pytest.fixture
def two_workers(backend: Backend, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """b and c each on its own worker, so the two branches run at the same time in two processes."""
    workers = [WorkerProcess(backend.env, tmp_path, ["fan_a", "fan_b", "fan_d"], concurrency=1, name="left"),
               WorkerProcess(backend.env, tmp_path, ["fan_c"], concurrency=1, name="right")]
    yield workers
    stop_all(workers)


def test_a_diamond_joins_exactly_once_when_its_branches_finish_together(
        backend: Backend, two_workers: list[WorkerProcess], tmp_path: Path) -> None:
    Workflow(**DIAMOND).save()
    spreads = []
    for _ in range(50):
        instance_id = start_workflow("fan", {"dir": str(tmp_path / "barrier"), "barrier": ["b", "c"]})
        assert wait_finished([instance_id], timeout=30) == {instance_id: "done"}
        info = get_instance(instance_id)
        b, c = info.results["b"], info.results["c"]
        assert b["pid"] != c["pid"]  # two workers
        assert b["began"] < c["ended"] and c["began"] < b["ended"]  # the branches overlapped in time
        spreads.append(abs(b["ended"] - c["ended"]))
        tasks = {t.step_id: t for t in info.tasks}
        assert tasks["d"].started_at is not None and tasks["b"].finished_at and tasks["c"].finished_at
        assert tasks["d"].started_at >= max(tasks["b"].finished_at, tasks["c"].finished_at)  # d after both
        kinds = [(e.kind, e.step_id) for e in history(instance_id)]
        assert kinds.count(("task.queued", "d")) == 1 and kinds.count(("task.done", "d")) == 1
        assert info.results["d"] == {"saw": ["a", "b", "c"]}
    spreads.sort()
    print(f"branches finished {1000 * spreads[len(spreads) // 2]:.2f} ms apart (median), "
          f"{1000 * spreads[-1]:.2f} ms at most, over {len(spreads)} instances")
    assert spreads[len(spreads) // 2] < 0.001  # most pairs within the same millisecond


@pytest.mark.parametrize("chunk", [1, 10])
def test_a_map_of_200_items_survives_a_killed_worker(backend: Backend, tmp_path: Path, chunk: int) -> None:
    """Each item done once and the map's end offered once, one item to a message or ten (``chunk``: each message's
    items claimed in one statement), with a worker killed in mid-run."""
    Workflow(id="survey", steps=[
        {"id": "map_item", "sla": "5m", "map": "payload.facilities", "chunk": chunk},
        {"id": "map_report", "sla": "1m"},
    ]).save()
    instance_id = _finish_with_a_worker_killed(backend, tmp_path, ["map_item", "map_report"], "survey",
                                               {"facilities": list(range(200)), "sleep": 0.02}, 40)
    with transaction() as s:
        done = Counter(s.scalars(select(TaskRow.item_index).where(
            TaskRow.instance_id == instance_id, TaskRow.step_id == "map_item", TaskRow.status == "done")))
        events = s.execute(select(EventRow.kind, EventRow.step_id, EventRow.data, EventRow.at, EventRow.attempt)
                           .where(EventRow.instance_id == instance_id)).all()
    assert sorted(done) == list(range(200)) and set(done.values()) == {1}  # every item done once
    done_events = Counter(e.data["item_index"] for e in events if e.kind == "task.done" and e.step_id == "map_item")
    assert sorted(done_events) == list(range(200)) and set(done_events.values()) == {1}
    assert sum(e.kind == "task.queued" and e.step_id == "map_report" for e in events) == 1  # the join, once
    info = get_instance(instance_id)
    assert info.results["map_report"] == {"count": 200, "in_order": True}
    assert [r["n"] for r in info.results["map_item"]] == list(range(200))
    lost = sum(e.kind == "task.lease_expired" for e in events)
    print(f"{lost} item(s) re-offered after the worker was killed")
    claims = Counter((e.at, e.data.get("worker_id")) for e in events
                     if (e.kind, e.step_id, e.attempt) == ("task.started", "map_item", 1))
    # a statement per message at most (two claims at the same microsecond by one worker's children look like one)
    assert sum(claims.values()) == 200 and len(claims) <= 200 // chunk


def test_a_fan_out_of_60_branches_ten_to_a_message_survives_a_killed_worker(backend: Backend,
                                                                             tmp_path: Path) -> None:
    """Sixty sibling branches with ``chunk: 10``: six messages, each claimed in one statement; with a worker killed
    in mid-run, every branch is done once and the join offered once."""
    legs = [f"leg{n}" for n in range(60)]
    Workflow(id="fanned", steps=[
        *({"id": leg, "topic": "map_item", "sla": "5m", "after": [], "chunk": 10} for leg in legs),
        {"id": "joined", "topic": "branch_ok", "sla": "1m", "after": legs},
    ]).save()
    instance_id = _finish_with_a_worker_killed(backend, tmp_path, ["map_item", "branch_ok"], "fanned",
                                               {"sleep": 0.1}, 10)
    with transaction() as s:
        events = s.execute(select(EventRow.kind, EventRow.step_id, EventRow.data, EventRow.at, EventRow.attempt)
                           .where(EventRow.instance_id == instance_id)).all()
    done = Counter(e.step_id for e in events if e.kind == "task.done")
    assert done == Counter({**dict.fromkeys(legs, 1), "joined": 1})  # every branch done once, the join once
    assert sum(e.kind == "task.queued" and e.step_id == "joined" for e in events) == 1
    claims = Counter((e.at, e.data.get("worker_id")) for e in events
                     if e.kind == "task.started" and e.attempt == 1 and e.step_id in legs)
    assert sum(claims.values()) == 60 and len(claims) <= 6  # a statement per message
    print(f"{sum(e.kind == 'task.lease_expired' for e in events)} branch(es) re-offered after the worker was killed")


def _finish_with_a_worker_killed(backend: Backend, tmp_path: Path, topics: list[str], workflow: str,
                                 payload: dict[str, object], done_before: int) -> str:
    """Start ``workflow`` on three workers of two children each, kill one (-9) once ``done_before`` tasks are done,
    and wait for the instance to be done, sweeping the dead worker's claims (they lapse after 2 s) as beat's scan
    would. Returns the instance's id."""
    oms.configure(database_url=backend.database_url, broker_url=backend.broker_url, home=backend.home,
                  reconcile_after=2)
    env = {**backend.env, "OMS_WORKER_LEASE": "2", "OMS_HEARTBEAT_INTERVAL": "0.5"}
    workers = [WorkerProcess(env, tmp_path, topics, concurrency=2, name=f"{workflow}{n}") for n in range(3)]
    try:
        instance_id = start_workflow(workflow, payload)
        deadline = time.monotonic() + 60
        while _done_items(instance_id) < done_before:
            assert time.monotonic() < deadline, f"{workflow} does not progress"
            time.sleep(0.05)
        workers[0].kill()  # kill -9 in mid-run, with tasks claimed

        def upkeep() -> None:
            scan_sla()  # re-offers the dead worker's lapsed claims
            reconcile()

        assert wait_finished([instance_id], timeout=90, poll=upkeep) == {instance_id: "done"}
    finally:
        stop_all(workers)
    return instance_id


def _done_items(instance_id: str) -> int:
    with transaction() as s:
        return len(s.scalars(select(TaskRow.id).where(TaskRow.instance_id == instance_id,
                                                       TaskRow.status == "done")).all())


def test_a_failing_branch_cancels_its_sibling_and_retry_finishes_the_rest(backend: Backend, tmp_path: Path) -> None:
    Workflow(id="branches", steps=[
        {"id": "start", "topic": "branch_ok", "sla": "1m"},
        {"id": "checks", "topic": "branch_fails", "sla": "1m", "after": ["start"]},
        {"id": "slow", "topic": "branch_ok", "sla": "1m", "after": ["start"]},
        {"id": "finish", "topic": "branch_ok", "sla": "1m", "after": ["checks", "slow"]},
    ]).save()
    worker = WorkerProcess(backend.env, tmp_path, ["branch_ok", "branch_fails"], concurrency=2)
    try:
        # slow is still running when checks fails
        instance_id = start_workflow("branches", {"fail_until": 1, "fail_after": 0.5, "sleeps": {"slow": 2}})
        assert wait_finished([instance_id], timeout=30) == {instance_id: "failed"}
        kinds = [(e.kind, e.step_id) for e in history(instance_id)]
        assert ("task.failed", "checks") in kinds and ("task.cancelled", "slow") in kinds
        assert kinds[-1] == ("workflow.failed", None)
        deadline = time.monotonic() + 10  # the sibling's late completion is refused
        while "outcome of" not in worker.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "is failed: nothing was changed" in worker.log.read_text()
        retry_workflow(instance_id)
        assert wait_finished([instance_id], timeout=30) == {instance_id: "done"}
    finally:
        worker.stop()
    done = Counter(e.step_id for e in history(instance_id) if e.kind == "task.done")
    assert done == {"start": 1, "checks": 1, "slow": 1, "finish": 1}  # the done step was not run again
    retried = [e.step_id for e in history(instance_id) if e.kind == "task.retried"]
    assert sorted(retried) == ["checks", "slow"]
