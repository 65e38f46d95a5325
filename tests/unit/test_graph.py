"""Parallel steps with the clock passed in: fan-out, joins decided once, maps, a failing branch, retry.

Runs on SQLite here and on PostgreSQL in ``tests/integration/test_on_postgres.py``
(where completions take the one-statement path, and maps the transactional one).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

import oms
from oms import InvalidDefinition, InvalidPayload, Workflow, get_instance, history, retry_workflow, start_workflow
from oms.celery.compiler import compile_chain
from oms.engine import door
from oms.exceptions import InstanceFinished, TooManyItems

from ..conftest import Backend

DIAMOND = {"id": "diamond", "steps": [
    {"id": "a", "sla": "1m"},
    {"id": "b", "sla": "1m"},
    {"id": "c", "sla": "1m", "after": ["a"]},
    {"id": "d", "sla": "1m", "after": ["b", "c"]},
]}


def _run(instance_id: str, index: int, result: dict[str, Any] | None = None, *, item: int | None = None,
         now: datetime | None = None) -> list[int]:
    """Claim and complete one step (or item); return the steps it made ready."""
    task = door.claim_step(instance_id, index, "w1", item_index=item, now=now)
    assert task is not None, (index, item)
    return [d.from_step for d in door.complete(task, result, now=now).offered]


def _queued(instance_id: str) -> list[tuple[str | None, int | None]]:
    return [(e.step_id, e.data.get("item_index")) for e in history(instance_id) if e.kind == "task.queued"]


@pytest.mark.parametrize(("steps", "message"), [
    ([{"id": "a", "sla": "1m", "after": ["c"]}, {"id": "b", "sla": "1m"}, {"id": "c", "sla": "1m"}],
     "cycle: a -> b -> c -> a"),
    ([{"id": "a", "sla": "1m"}, {"id": "b", "sla": "1m", "after": ["a", "ghost"]}],
     r"steps\[1\].after: unknown step 'ghost' \(step 'b'\)"),
    ([{"id": "a", "sla": "1m", "after": ["a"]}], "step 'a' cannot come after itself"),
    ([{"id": "a", "sla": "1m"}, {"id": "b", "sla": "1m", "after": ["a", "a"]}], "'a' listed twice"),
    ([{"id": "a", "sla": "1m", "map": "items"}], r"steps\[0\].map: .*must be 'payload"),
    ([{"id": "a", "sla": "1m", "map": "results.b.items"}, {"id": "b", "sla": "1m"}],
     "reads the result of 'b', which does not come before 'a'"),
    ([{"id": "a", "sla": "1m", "map": "results.nope.items"}], "unknown step 'nope'"),
])
def test_graph_errors_name_the_steps(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidDefinition, match=message):
        Workflow(id="w", steps=steps)


def test_a_plain_list_keeps_its_meaning_and_its_stored_form() -> None:
    line = Workflow(id="w", steps=[{"id": "a", "sla": "1m"}, {"id": "b", "sla": "1m"}, {"id": "c", "sla": "1m"}])
    assert line.graph.predecessors == ((), (0,), (1,)) and line.graph.is_line
    assert "after" not in str(line.spec())  # the digest, so the version, of existing definitions is unchanged
    explicit = Workflow(id="w", steps=[{"id": "a", "sla": "1m"}, {"id": "b", "sla": "1m", "after": ["a"]},
                                       {"id": "c", "sla": "1m", "after": ["b"]}])
    assert explicit.graph == line.graph


def test_chains_follow_straight_runs_and_break_at_fan_outs_joins_and_maps() -> None:
    wf = Workflow(id="w", steps=[
        {"id": "a", "sla": "1m"}, {"id": "b", "sla": "1m"},                     # a -> b, straight
        {"id": "c", "sla": "1m"}, {"id": "d", "sla": "1m", "after": ["b"]},      # b fans out to c and d
        {"id": "e", "sla": "1m", "after": ["c", "d"]}, {"id": "f", "sla": "1m"},  # e joins; e -> f straight
        {"id": "g", "sla": "1m", "map": "payload.items"},                        # a mapped step
    ])
    assert [t.kwargs["step"] for t in compile_chain(oms.app, wf, "wf-1").tasks] == ["a", "b"]
    assert compile_chain(oms.app, wf, "wf-1", 2).kwargs["step"] == "c"
    assert [t.kwargs["step"] for t in compile_chain(oms.app, wf, "wf-1", 4).tasks] == ["e", "f"]
    item = compile_chain(oms.app, wf, "wf-1", 6, item_index=7)
    assert item.kwargs == {"instance_id": "wf-1", "workflow": "w", "step": "g", "index": 6, "item": 7}


def test_a_diamond_runs_its_branches_together_and_joins_once(backend: Backend) -> None:
    Workflow(**DIAMOND).save()
    iid = start_workflow("diamond", {"form_id": "F-1"})
    assert _run(iid, 0, {"a": 1}) == [1, 2]  # b and c offered together
    assert _run(iid, 2, {"c": 3}) == []      # the join still waits for b
    assert _queued(iid) == [("a", None), ("b", None), ("c", None)]
    assert _run(iid, 1, {"b": 2}) == [3]     # the last predecessor offers d
    task = door.claim_step(iid, 3, "w1")
    assert task is not None and task.results == {"a": {"a": 1}, "b": {"b": 2}, "c": {"c": 3}}
    assert door.complete(task, None).offered == []
    info = get_instance(iid)
    assert info.status == "done"
    kinds = [e.kind for e in history(iid)]
    assert kinds.count("task.queued") == 4 and kinds[-1] == "workflow.done" and kinds.count("workflow.done") == 1


def test_first_steps_start_together(backend: Backend) -> None:
    Workflow(id="roots", steps=[{"id": "x", "sla": "1m", "after": []}, {"id": "y", "sla": "1m", "after": []},
                                {"id": "z", "sla": "1m", "after": ["x", "y"]}]).save()
    iid = start_workflow("roots", {})
    assert _queued(iid) == [("x", None), ("y", None)]
    assert _run(iid, 1) == [] and _run(iid, 0) == [2] and _run(iid, 2) == []
    assert get_instance(iid).status == "done"


def test_branches_finishing_at_the_same_moment_join_once(backend: Backend) -> None:
    Workflow(**DIAMOND).save()
    for _ in range(10):
        iid = start_workflow("diamond", {})
        _run(iid, 0)
        b, c = (door.claim_step(iid, i, "w1") for i in (1, 2))
        assert b is not None and c is not None
        barrier = threading.Barrier(2)
        offered: list[list[int]] = []

        def finish(task: door.Task) -> None:
            barrier.wait()
            offered.append([d.from_step for d in door.complete(task).offered])

        threads = [threading.Thread(target=finish, args=(t,)) for t in (b, c)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(offered) == [[], [3]]
        assert _queued(iid).count(("d", None)) == 1


def test_a_map_runs_once_per_item_and_the_next_step_sees_the_results_in_order(backend: Backend) -> None:
    Workflow(id="inspect", steps=[
        {"id": "collect_form", "sla": "5m"},
        {"id": "inspect_site", "sla": "1h", "map": "results.collect_form.facilities"},
        {"id": "report", "sla": "1m"},
    ]).save()
    iid = start_workflow("inspect", {})
    assert _run(iid, 0, {"facilities": ["north", "south", "east"]}) == [1, 1, 1]
    items = [door.claim_step(iid, 1, "w1", item_index=k) for k in range(3)]
    assert [(t.item, t.item_index) for t in items if t] == [("north", 0), ("south", 1), ("east", 2)]
    for task in reversed(items):  # finishing out of order
        assert task is not None
        offered = [d.from_step for d in door.complete(task, {"site": task.item}).offered]
        assert offered == ([2] if task.item_index == 0 else [])
    report = door.claim_step(iid, 2, "w1")
    assert report is not None
    assert report.results["inspect_site"] == [{"site": "north"}, {"site": "south"}, {"site": "east"}]
    events = [(e.kind, e.step_id, e.data.get("item_index")) for e in history(iid)]
    assert ("step.mapped", "inspect_site", None) in events
    assert sum(kind == "task.done" and step == "inspect_site" for kind, step, _ in events) == 3
    assert {i for kind, step, i in events if kind == "task.done" and step == "inspect_site"} == {0, 1, 2}


def test_an_empty_map_completes_its_step_at_once(backend: Backend) -> None:
    Workflow(id="empty", steps=[{"id": "each", "sla": "1m", "map": "payload.items"}, {"id": "after", "sla": "1m"}]).save()
    iid = start_workflow("empty", {"items": []})
    assert _queued(iid) == [("after", None)]
    assert [e.data for e in history(iid) if e.kind == "step.mapped"] == [{"items": 0}]
    task = door.claim_step(iid, 1, "w1")
    assert task is not None and task.results == {"each": []}
    Workflow(id="only_empty", steps=[{"id": "each", "sla": "1m", "map": "payload.items"}]).save()
    done = start_workflow("only_empty", {"items": []})
    assert get_instance(done).status == "done"
    assert [e.kind for e in history(done)] == ["workflow.started", "step.mapped", "workflow.done"]


def test_map_lists_are_checked_at_start_when_the_payload_holds_them(backend: Backend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    Workflow(id="each", steps=[{"id": "each", "sla": "1m", "map": "payload.items"}]).save()
    with pytest.raises(InvalidPayload, match="map path 'payload.items' does not resolve"):
        start_workflow("each", {})
    with pytest.raises(InvalidPayload, match=r"is not a list \(found str\)"):
        start_workflow("each", {"items": "abc"})
    monkeypatch.setenv("OMS_MAX_MAP_ITEMS", "3")
    oms.configure(database_url=backend.database_url, broker_url=backend.broker_url, home=backend.home)
    with pytest.raises(TooManyItems, match=r"has 4 items, more than OMS_MAX_MAP_ITEMS \(3\)"):
        start_workflow("each", {"items": [1, 2, 3, 4]})
    with pytest.raises(InvalidPayload, match=r"payloads\[1\]: .*does not resolve"):
        oms.start_workflows("each", [{"items": [1]}, {}])
    assert oms.sla_summary() == []  # nothing was stored


def test_a_list_that_cannot_be_read_when_the_step_is_ready_fails_the_instance(backend: Backend) -> None:
    Workflow(id="late_map", steps=[{"id": "a", "sla": "1m"}, {"id": "b", "sla": "1m", "map": "results.a.ids"}]).save()
    iid = start_workflow("late_map", {})
    assert _run(iid, 0, {"ids": 42}) == []
    info = get_instance(iid)
    assert info.status == "failed" and "step 'b' cannot start" in (info.error or "")
    assert [e.kind for e in history(iid)][-2:] == ["task.done", "workflow.failed"]


def test_a_failing_branch_cancels_its_sibling_and_retry_resumes_only_what_did_not_finish(backend: Backend) -> None:
    Workflow(**DIAMOND).save()
    iid = start_workflow("diamond", {})
    _run(iid, 0)
    b = door.claim_step(iid, 1, "w1")
    c = door.claim_step(iid, 2, "w2")
    assert b is not None and c is not None
    assert door.fail(b, "IRS down").retry is None
    info = get_instance(iid)
    assert info.status == "failed" and "step 'b' failed" in (info.error or "")
    assert [(e.kind, e.step_id) for e in history(iid)][-3:] == [
        ("task.failed", "b"), ("task.cancelled", "c"), ("workflow.failed", None)]
    with pytest.raises(InstanceFinished, match="is failed"):
        door.complete(c, {"late": True})  # the sibling's late result is refused
    retry_workflow(iid)
    assert [(e.kind, e.step_id, e.attempt) for e in history(iid)][-3:] == [
        ("workflow.resumed", None, None), ("task.retried", "b", 2), ("task.retried", "c", 2)]
    assert not any(e.kind == "task.retried" and e.step_id == "a" for e in history(iid))  # a stays done
    now = datetime.now(UTC)
    assert _run(iid, 1, now=now) == [] and _run(iid, 2, now=now) == [3] and _run(iid, 3, now=now) == []
    assert get_instance(iid).status == "done"


def test_a_failed_item_is_retried_as_itself(backend: Backend) -> None:
    Workflow(id="items", steps=[{"id": "each", "sla": "1m", "map": "payload.ids", "retries": 1}]).save()
    iid = start_workflow("items", {"ids": ["p", "q"]})
    task = door.claim_step(iid, 0, "w1", item_index=1)
    assert task is not None
    retry = door.fail(task, "flaky").retry
    assert retry is not None and (retry.from_step, retry.item_index) == (0, 1)
    again = door.claim_step(iid, 0, "w1", item_index=1)
    assert again is not None and (again.item, again.attempt, again.failures) == ("q", 2, 1)
    door.complete(again, {"ok": "q"})
    first = door.claim_step(iid, 0, "w1", item_index=0)
    assert first is not None
    door.complete(first, None)
    info = get_instance(iid)
    assert info.status == "done" and info.results == {"each": [None, {"ok": "q"}]}


def test_workflow_list_shows_the_steps_by_stage_with_parallel_ones_together() -> None:
    from oms.reads.summaries import flow

    def of(steps: list[dict[str, Any]]) -> str:
        return flow(Workflow(id="w", steps=[{"sla": "1m", **s} for s in steps]).graph)

    assert of([{"id": "a"}, {"id": "b"}, {"id": "c"}]) == "a > b > c"
    site = [{"id": "collect_form"}, {"id": "charge_fee", "after": ["collect_form"]},
            {"id": "check_permits", "after": ["collect_form"]},
            {"id": "inspect_site", "after": ["charge_fee", "check_permits"], "map": "payload.sites"},
            {"id": "issue_permit"}]
    assert of(site) == "collect_form > {charge_fee, check_permits} > inspect_site > issue_permit"
    assert of([{"id": "a", "after": []}, {"id": "b", "after": []}, {"id": "c", "after": ["a", "b"]}]) == "{a, b} > c"
