"""Batches: ``fetch_tasks`` claims many steps in one statement, ``complete_tasks`` / ``fail_tasks`` record many
outcomes in one transaction, each task judged on its own, joins and maps exactly as single completions.

Run on SQLite here and on PostgreSQL by ``tests/integration/test_on_postgres.py``.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

import act
from act import TaskOutcome, complete_tasks, fail_tasks, fetch_tasks
from oms import Workflow, get_instance, history, start_workflow, start_workflows
from oms.engine import door
from oms.exceptions import InvalidArgument

from ..conftest import Backend

#: A task id no task has.
NOBODY = "tk-" + "0" * 32
#: A fan-out of five branches on one topic, their join, and a step after it.
FAN = {"id": "fan", "steps": [
    {"id": "split", "sla": "1h"},
    *({"id": f"b{n}", "topic": "branch", "sla": "1h", "after": ["split"]} for n in range(5)),
    {"id": "join", "sla": "1h", "after": [f"b{n}" for n in range(5)]},
    {"id": "last", "sla": "1h"},
]}


def _kinds(instance_id: str) -> Counter[tuple[str, str | None]]:
    return Counter((e.kind, e.step_id) for e in history(instance_id))


def test_fetch_tasks_claims_up_to_max_tasks_each_once_with_its_event(backend: Backend) -> None:
    Workflow(id="many", steps=[{"id": "many", "sla": "1h"}]).save()
    ids = start_workflows("many", [{"n": n} for n in range(7)])
    first = fetch_tasks("many", max_tasks=5, max_wait=1, worker_id="w1")
    second = fetch_tasks("many", max_tasks=5, max_wait=1, worker_id="w2")
    assert len(first) == 5 and len(second) == 2  # returns what there is, without waiting for more
    assert {t.worker_id for t in first} == {"w1"} and {t.worker_id for t in second} == {"w2"}
    assert sorted(t.instance_id for t in first + second) == sorted(ids)
    assert all(t.lease_expires_at is not None for t in first)
    assert fetch_tasks("many", max_tasks=5, max_wait=0.2) == []
    for instance_id in ids:
        assert _kinds(instance_id)[("task.started", "many")] == 1
    outcomes = complete_tasks([(t.id, {"n": t.payload["n"]}) for t in first], worker_id="w1")
    assert outcomes == [TaskOutcome(t.id, "done") for t in first] and all(o.ok for o in outcomes)
    assert {get_instance(t.instance_id).status for t in first} == {"done"}
    assert get_instance(first[0].instance_id).results == {"many": {"n": first[0].payload["n"]}}
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(InvalidArgument, match="max_tasks"):
            fetch_tasks("many", max_tasks=bad, max_wait=0)  # type: ignore[arg-type]


def test_each_task_of_a_batch_is_judged_on_its_own(backend: Backend) -> None:
    Workflow(id="judged", steps=[{"id": "judged", "sla": "1h"}, {"id": "after_judged", "sla": "1h"}]).save()
    start_workflows("judged", [{"n": n} for n in range(6)])
    now = door.utcnow()
    tasks, _ = door.claim_tasks("judged", "w1", timedelta(minutes=5), 5, now=now)
    short, _ = door.claim_tasks("judged", "w1", timedelta(seconds=1), 1, now=now)
    assert len(tasks) == 5 and len(short) == 1
    ok, finished, other, bad_result, same = tasks
    door.complete(finished.id, None, worker_id="w1", now=now)
    door.extend(other.id, "5m", worker_id="w1", now=now)
    items = [(ok.id, {"fine": True}), (finished.id, {"another": "result"}), (short[0].id, None), (NOBODY, None),
             (bad_result.id, "not an object"), ("not an id!", None), (same.id, None), (same.id, None)]
    outcomes = door.complete_many(items, worker_id="w1", now=now + timedelta(seconds=2))  # type: ignore[arg-type]
    assert [(o.task_id, o.status, o.error, o.repeat) for o in outcomes] == [
        (ok.id, "done", None, False), (finished.id, "refused", "TaskAlreadyFinished", False),
        (short[0].id, "refused", "LeaseLost", False), (NOBODY, "refused", "TaskNotFound", False),
        (bad_result.id, "refused", "InvalidPayload", False), ("not an id!", "refused", "InvalidArgument", False),
        (same.id, "done", None, False), (same.id, "done", None, True)]  # the holder's same completion: a repeat
    assert isinstance(outcomes[2].exception, act.LeaseLost) and "ran out" in (outcomes[2].detail or "")
    refused = door.complete_many([(other.id, None)], worker_id="w2")  # not the holder
    assert (refused[0].status, refused[0].error) == ("refused", "NotLeaseHolder")
    # what was refused changed nothing; what went through moved its instance on, once
    assert get_instance(ok.instance_id).current_step == "after_judged"
    assert get_instance(same.instance_id).current_step == "after_judged"
    assert [t.status for t in get_instance(bad_result.instance_id).tasks] == ["running"]
    assert [t.status for t in get_instance(short[0].instance_id).tasks] == ["running"]
    assert _kinds(same.instance_id)[("task.done", "judged")] == 1
    assert door.complete_many([]) == []


def test_a_join_whose_branches_finish_in_one_batch_is_offered_once(backend: Backend) -> None:
    Workflow(**FAN).save()  # type: ignore[arg-type]
    ids = [start_workflow("fan", {"n": n}) for n in range(3)]
    for split in fetch_tasks("split", max_tasks=10, max_wait=1):
        act.complete_task(split.id)
    branches = fetch_tasks("branch", max_tasks=100, max_wait=1, worker_id="w")
    assert len(branches) == 15
    outcomes = complete_tasks([(t.id, {"b": t.step_id}) for t in reversed(branches)], worker_id="w")
    assert {o.status for o in outcomes} == {"done"}
    for instance_id in ids:
        kinds = _kinds(instance_id)
        assert kinds[("task.queued", "join")] == 1 and kinds[("task.done", "b4")] == 1
        info = get_instance(instance_id)
        assert [t.status for t in info.tasks if t.step_id == "join"] == ["pending"]
        assert info.results["b3"] == {"b": "b3"}
    joins = fetch_tasks("join", max_tasks=10, max_wait=1)
    assert len(joins) == 3
    assert {o.status for o in complete_tasks([(t.id, None) for t in joins])} == {"done"}
    for last in fetch_tasks("last", max_tasks=10, max_wait=1):
        act.complete_task(last.id)
    assert {get_instance(i).status for i in ids} == {"done"}
    assert all(_kinds(i)[("workflow.done", None)] == 1 for i in ids)


def test_a_maps_items_finished_in_one_batch_gather_once_in_order(backend: Backend) -> None:
    Workflow(id="mapped", steps=[
        {"id": "collect", "sla": "1h"},
        {"id": "each", "sla": "1h", "map": "results.collect.items"},
        {"id": "then", "sla": "1h"},
    ]).save()
    ids = [start_workflow("mapped", {}) for _ in range(2)]
    collected = fetch_tasks("collect", max_tasks=10, max_wait=1)
    # each completion makes a mapped step ready, whose list is read: the transactional path, in the batch
    outcomes = complete_tasks([(t.id, {"items": list(range(3 + n))}) for n, t in enumerate(collected)])
    assert {o.status for o in outcomes} == {"done"}
    items = fetch_tasks("each", max_tasks=100, max_wait=1)
    assert len(items) == 3 + 4
    by_instance = {i: [t for t in items if t.instance_id == i] for i in ids}
    first = complete_tasks([(t.id, {"x": t.item * 10}) for t in by_instance[ids[0]][:2]])
    rest = complete_tasks([(t.id, {"x": t.item * 10}) for t in reversed(by_instance[ids[0]][2:] + by_instance[ids[1]])])
    assert {o.status for o in first + rest} == {"done"}
    for instance_id in ids:
        info = get_instance(instance_id)
        assert info.results["each"] == [{"x": n * 10} for n in range(len(info.results["collect"]["items"]))]
        assert _kinds(instance_id)[("task.queued", "then")] == 1
        assert [t.status for t in info.tasks if t.step_id == "then"] == ["pending"]


def test_fail_tasks_retries_or_fails_each_and_a_failed_instance_refuses_its_other_branches(
        backend: Backend) -> None:
    Workflow(id="retried", steps=[{"id": "retried", "sla": "1h", "retries": 1}]).save()
    Workflow(**{**FAN, "id": "fan_fail"}).save()  # type: ignore[arg-type]
    retried = start_workflow("retried", {})
    fanned = start_workflow("fan_fail", {})
    act.complete_task(fetch_tasks("split", max_wait=1)[0].id)
    [task] = fetch_tasks("retried", max_wait=1, worker_id="w")
    branches = fetch_tasks("branch", max_tasks=10, max_wait=1, worker_id="w")
    outcomes = fail_tasks([(task.id, "IRS mismatch"), (branches[0].id, "broken"), (branches[1].id, "broken too"),
                           (branches[2].id, "")], worker_id="w")
    assert [(o.status, o.error) for o in outcomes] == [
        ("failed", None), ("failed", None), ("refused", "InstanceFinished"), ("refused", "InvalidArgument")]
    assert [(t.status, t.attempt) for t in get_instance(retried).tasks] == [("failed", 1), ("pending", 2)]
    info = get_instance(fanned)
    assert info.status == "failed" and "broken" in (info.error or "")
    assert _kinds(fanned)[("workflow.failed", None)] == 1
    assert [t.status for t in info.tasks if t.id == branches[0].id] == ["failed"]
    assert {t.status for t in info.tasks if t.topic == "branch" and t.id != branches[0].id} == {"cancelled"}
