"""``chunk``: a mapped step's items, or a fan-out's sibling branches on one topic, offered that many to a message,
claimed by the worker in one statement and recorded in one transaction, each still a task of its own (its clock,
retries, events), the map's end and the join exact.

Run on SQLite here and on PostgreSQL by ``tests/integration/test_on_postgres.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from celery.exceptions import Ignore

import oms
from act import Task
from act.subscribe import run_branches, run_chunk
from oms import Workflow, get_instance, history, start_workflow
from oms.celery.compiler import compile_chain
from oms.celery.dispatch import Dispatch, chunked
from oms.engine import door
from oms.exceptions import ConfigurationError, InvalidDefinition
from oms.model.limits import check_fits_broker
from oms.settings import OmsSettings
from oms.store.catalog import definition

from ..conftest import Backend

#: A map over ``payload.items``, ten to a message, then a step that sees their results.
CHUNKY = {"id": "chunky", "steps": [
    {"id": "each", "sla": "1h", "map": "payload.items", "chunk": 10, "retries": 1},
    {"id": "after", "sla": "1h"},
]}


def _sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The kwargs of every message the engine's app sends from now on."""
    sent: list[dict[str, Any]] = []
    send = oms.app.send_task

    def spy(name: str, *args: Any, **options: Any) -> Any:
        sent.append({"name": name, **options.get("kwargs", {})})
        return send(name, *args, **options)

    monkeypatch.setattr(oms.app, "send_task", spy)
    return sent


def test_a_chunked_map_offers_its_items_ten_to_a_message(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    Workflow(**CHUNKY).save()
    sent = _sent(monkeypatch)
    instance_id = start_workflow("chunky", {"items": list(range(25))})
    assert [(m["name"], m["item"], m.get("items", 1)) for m in sent] == [
        ("act.each", 0, 10), ("act.each", 10, 10), ("act.each", 20, 5)]
    assert [t.status for t in get_instance(instance_id).tasks] == ["pending"] * 25  # still a task each


def test_only_consecutive_items_of_one_step_offered_together_share_a_message(backend: Backend) -> None:
    Workflow(**CHUNKY).save()
    Workflow(id="plain", steps=[{"id": "each", "sla": "1h", "map": "payload.items"}]).save()

    def item(n: int, *, workflow: str = "chunky", instance: str = "wf-a", countdown: float = 0.0) -> Dispatch:
        return Dispatch(instance, workflow, 1, 0, countdown, n)

    assert chunked([item(n) for n in range(12)]) == [Dispatch("wf-a", "chunky", 1, 0, 0.0, 0, 10),
                                                     Dispatch("wf-a", "chunky", 1, 0, 0.0, 10, 2)]
    # retried items (3 and 5 apart), another instance's, a countdown of their own, a step without chunk: alone
    alone = [item(3), item(5), item(6, instance="wf-b"), item(7, countdown=2.0), item(8, workflow="plain"),
             item(9, workflow="plain")]
    assert chunked(alone) == alone
    start = Dispatch("wf-a", "chunky", 1, 0)
    assert chunked([start, start]) == [start, start]  # not items: never joined


def test_chunk_is_a_worker_steps_and_its_message_holds_its_items_time(backend: Backend) -> None:
    with pytest.raises(InvalidDefinition, match="chunk: a human step"):
        Workflow(id="bad", steps=[{"id": "s", "sla": "1m", "chunk": 5, "assign": {"groups": ["clerks"]}}])
    with pytest.raises(InvalidDefinition, match="chunk"):
        Workflow(id="bad", steps=[{"id": "s", "sla": "1m", "map": "payload.items", "chunk": 101}])
    redis = OmsSettings(broker_url="redis://127.0.0.1:1/0", visibility_timeout=3600)
    check_fits_broker(Workflow(id="fits", steps=[{"id": "s", "sla": "5m", "map": "payload.items", "chunk": 10}]),
                      redis)
    with pytest.raises(ConfigurationError, match="OMS_VISIBILITY_TIMEOUT"):  # ten items of 10 minutes, one by one
        check_fits_broker(Workflow(id="long", steps=[{"id": "s", "sla": "10m", "map": "payload.items",
                                                      "chunk": 10}]), redis)


def test_a_chunk_is_claimed_in_one_statement_and_leaves_out_what_is_not_pending(backend: Backend) -> None:
    Workflow(**CHUNKY).save()
    instance_id = start_workflow("chunky", {"items": list(range(25))})
    alone = door.claim_step(instance_id, 0, "other", item_index=12)
    assert alone is not None
    claimed = door.claim_items(instance_id, 0, "w1", 10, 10)
    assert [t.item_index for t in claimed] == [10, 11, *range(13, 20)]
    assert {t.worker_id for t in claimed} == {"w1"} and [t.item for t in claimed] == [10, 11, *range(13, 20)]
    assert door.claim_items(instance_id, 0, "w1", 10, 10) == []  # a duplicate delivery
    started = [e for e in history(instance_id) if e.kind == "task.started"]
    assert len(started) == 10 and len({e.at for e in started if e.data.get("worker_id") == "w1"}) == 1


def test_a_chunks_outcomes_are_recorded_together_each_item_on_its_own(backend: Backend) -> None:
    Workflow(**CHUNKY).save()
    instance_id = start_workflow("chunky", {"items": list(range(25))})
    ran: list[int] = []

    def handler(task: Task) -> dict[str, Any]:
        ran.append(task.item)
        if task.item == 3 and task.attempt == 1:
            raise RuntimeError("flaky")
        return {"twice": task.item * 2}

    with pytest.raises(Ignore):
        run_chunk("w1", handler, instance_id, 0, 0, 10)
    assert ran == list(range(10))
    tasks = {(t.item_index, t.attempt): t for t in get_instance(instance_id).tasks}
    assert {n for (n, attempt), t in tasks.items() if t.status == "done"} == set(range(10)) - {3}
    assert tasks[(3, 1)].status == "failed" and tasks[(3, 2)].status == "pending"  # retried on its own
    done = [e for e in history(instance_id) if e.kind == "task.done"]
    assert len(done) == 9 and len({e.at for e in done}) == 1  # one transaction
    for first in (10, 20):
        with pytest.raises(Ignore):
            run_chunk("w1", handler, instance_id, 0, first, 10)
    with pytest.raises(Ignore):
        run_chunk("w1", handler, instance_id, 0, 3, 1)  # the retry, its own message
    info = get_instance(instance_id)
    assert info.results["each"] == [{"twice": n * 2} for n in range(25)]
    kinds = Counter((e.kind, e.step_id) for e in history(instance_id))
    assert kinds[("task.done", "each")] == 25 and kinds[("task.queued", "after")] == 1  # the map ends once


#: A fan-out of seven branches after ``start``: five on ``leg`` that share messages three at a time, one on another
#: topic, one on ``leg`` without a chunk followed by a chain of its own; then the join.
FAN = {"id": "fan", "steps": [
    {"id": "start", "sla": "1h"},
    *({"id": f"leg{n}", "topic": "leg", "sla": "10m", "after": ["start"], "chunk": 3, "retries": 1}
      for n in range(5)),
    {"id": "other", "sla": "1h", "after": ["start"]},
    {"id": "chained", "topic": "leg", "sla": "10m", "after": ["start"]},
    {"id": "then", "topic": "leg", "sla": "10m", "after": ["chained"]},
    {"id": "join", "sla": "1h", "after": ["leg0", "leg1", "leg2", "leg3", "leg4", "other", "then"]},
]}


def test_sibling_branches_on_one_topic_share_a_message_up_to_their_chunk(backend: Backend) -> None:
    Workflow(**FAN).save()

    def step(n: int, *, instance: str = "wf-a", countdown: float = 0.0) -> Dispatch:
        return Dispatch(instance, "fan", 1, n, countdown)

    # leg0..leg4 are steps 1-5, other 6, chained 7
    assert chunked([step(n) for n in range(1, 8)]) == [
        Dispatch("wf-a", "fan", 1, 1, branches=(1, 2, 3)), Dispatch("wf-a", "fan", 1, 4, branches=(4, 5)),
        step(6), step(7)]
    # another instance's, a countdown of their own, the same step twice: alone
    alone = [step(1), step(2, instance="wf-b"), step(3, countdown=2.0), step(3, countdown=2.0)]
    assert chunked(alone) == alone


def test_a_chunk_that_could_never_share_a_message_is_refused_naming_why(backend: Backend) -> None:
    with pytest.raises(InvalidDefinition, match=r"steps\[0\].chunk: step 'alone' has no sibling branch"):
        Workflow(id="bad", steps=[{"id": "alone", "sla": "1m", "chunk": 5}])
    with pytest.raises(InvalidDefinition, match=r"steps\[0\].chunk: step 'a' has no sibling branch"):
        Workflow(id="bad", steps=[{"id": "a", "topic": "t", "sla": "1m", "after": [], "chunk": 5},
                                  {"id": "b", "sla": "1m", "after": [], "chunk": 5}])  # b's topic is its own id
    with pytest.raises(InvalidDefinition, match=r"steps\[2\].chunk: step 'b' starts a straight run \(then 'c'\)"):
        Workflow(id="bad", steps=[{"id": "a", "topic": "t", "sla": "1m", "after": [], "chunk": 5},
                                  {"id": "a2", "topic": "t", "sla": "1m", "after": [], "chunk": 5},
                                  {"id": "b", "topic": "t", "sla": "1m", "after": [], "chunk": 5},
                                  {"id": "c", "sla": "1m", "after": ["b"]}])
    Workflow(id="good", steps=[{"id": "a", "topic": "t", "sla": "1m", "after": [], "chunk": 5},
                               {"id": "b", "topic": "t", "sla": "1m", "after": [], "chunk": 5},
                               {"id": "c", "sla": "1m", "after": ["a", "b"]}])


def test_a_chunked_fan_out_offers_its_branches_three_to_a_message(backend: Backend,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    Workflow(**FAN).save()
    instance_id = start_workflow("fan", {})
    start = door.claim_step(instance_id, 0, "w0")
    assert start is not None
    sent = _sent(monkeypatch)
    door.complete(start, {})
    assert [(m["name"], m["step"], m.get("branches")) for m in sent] == [
        ("act.leg", "leg0", [1, 2, 3]), ("act.leg", "leg3", [4, 5]), ("act.other", "other", None),
        ("act.leg", "chained", None)]
    chunk = compile_chain(oms.app, definition("fan", 1), instance_id, 1, branches=(1, 2, 3))
    assert chunk.options["soft_time_limit"] == 3 * 600  # the message holds its three branches' SLAs


def test_a_chunk_of_branches_is_claimed_at_once_and_recorded_together_the_join_once(backend: Backend) -> None:
    Workflow(**FAN).save()
    instance_id = start_workflow("fan", {})
    start = door.claim_step(instance_id, 0, "w0")
    assert start is not None
    door.complete(start, {})
    alone = door.claim_step(instance_id, 2, "other")  # leg1, taken by another worker before the chunk's
    assert alone is not None
    ran: list[str] = []

    def handler(task: Task) -> dict[str, Any] | str:
        ran.append(task.step_id)
        return "fail" if task.step_id == "leg2" and task.attempt == 1 else {"leg": task.step_id}

    with pytest.raises(Ignore):
        run_branches("w1", handler, instance_id, [1, 2, 3])
    assert ran == ["leg0", "leg2"]
    started = [e for e in history(instance_id) if e.kind == "task.started" and e.data.get("worker_id") == "w1"]
    assert len(started) == 2 and len({e.at for e in started}) == 1  # one statement
    tasks = {(t.step_id, t.attempt): t.status for t in get_instance(instance_id).tasks}
    assert tasks[("leg0", 1)] == "done" and tasks[("leg2", 1)] == "failed" and tasks[("leg2", 2)] == "pending"
    with pytest.raises(Ignore):
        run_branches("w1", handler, instance_id, [1, 2, 3])  # delivered again: only leg2's retry is pending
    assert ran == ["leg0", "leg2", "leg2"]
    door.complete(alone, {"leg": "leg1"})
    for step_id, index in (("leg3", 4), ("leg4", 5), ("other", 6), ("chained", 7), ("then", 8)):
        task = door.claim_step(instance_id, index, "w2")
        assert task is not None, step_id
        door.complete(task, {"leg": step_id})
    info = get_instance(instance_id)
    assert info.results["leg2"] == {"leg": "leg2"} and info.tasks[-1].step_id == "join"
    kinds = Counter((e.kind, e.step_id) for e in history(instance_id))
    assert kinds[("task.queued", "join")] == 1  # the join, once


def test_a_retried_instance_offers_its_unfinished_branches_in_chunks_again(backend: Backend,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    Workflow(id="fan0", steps=[{**step, "retries": 0} for step in FAN["steps"]]).save()
    instance_id = start_workflow("fan0", {})
    start = door.claim_step(instance_id, 0, "w0")
    assert start is not None
    door.complete(start, {})
    with pytest.raises(Ignore):
        run_branches("w1", lambda task: "fail" if task.step_id == "leg1" else {}, instance_id, [1, 2, 3])
    assert get_instance(instance_id).status == "failed"  # leg1 failed; leg3, leg4 and the rest were cancelled
    sent = _sent(monkeypatch)
    oms.retry_workflow(instance_id)
    assert [(m["step"], m.get("branches")) for m in sent] == [
        ("leg1", [2, 4, 5]), ("other", None), ("chained", None)]  # leg0 and leg2 stay done
