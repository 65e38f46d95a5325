"""A mapped step's ``chunk``: its items offered that many to a message, claimed by the worker in one statement and
recorded in one transaction, each item still a task of its own (its clock, retries, events), the map's end exact.

Run on SQLite here and on PostgreSQL by ``tests/integration/test_on_postgres.py``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from celery.exceptions import Ignore

import oms
from act import Task
from act.subscribe import run_chunk
from oms import Workflow, get_instance, history, start_workflow
from oms.celery.dispatch import Dispatch, chunked
from oms.engine import door
from oms.exceptions import ConfigurationError, InvalidDefinition
from oms.model.limits import check_fits_broker
from oms.settings import OmsSettings

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


def test_chunk_is_a_mapped_steps_and_its_message_holds_its_items_time(backend: Backend) -> None:
    with pytest.raises(InvalidDefinition, match="chunk: only a mapped step"):
        Workflow(id="bad", steps=[{"id": "s", "sla": "1m", "chunk": 5}])
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
