"""Only the worker holding a claim may complete, fail or extend it; the seed's loop needs no worker id."""

from __future__ import annotations

from datetime import timedelta

import pytest

from act import complete_task, extend_lease, fail_task, fetch_task
from oms import Workflow, get_instance, history, start_workflow
from oms.engine import door
from oms.exceptions import NotLeaseHolder

from ..conftest import Backend


@pytest.fixture
def claimed(backend: Backend) -> door.Task:
    Workflow(id="held", steps=[{"id": "held_step", "sla": "1h"}]).save()
    start_workflow("held", {})
    task, _ = door.claim_topic("held_step", "agent-a", timedelta(minutes=5))
    assert task is not None and task.worker_id == "agent-a"
    return task


def test_another_worker_cannot_finish_or_extend_a_claim(claimed: door.Task) -> None:
    before = [e.kind for e in history(claimed.instance_id)]
    with pytest.raises(NotLeaseHolder, match="leased to worker 'agent-a', not 'agent-b'"):
        complete_task(claimed.id, {"x": 1}, worker_id="agent-b")
    with pytest.raises(NotLeaseHolder):
        fail_task(claimed.id, "nope", worker_id="agent-b")
    with pytest.raises(NotLeaseHolder):
        extend_lease(claimed.id, "10m", worker_id="agent-b")
    assert [e.kind for e in history(claimed.instance_id)] == before  # nothing changed
    extend_lease(claimed.id, "10m", worker_id="agent-a")
    complete_task(claimed.id, {"x": 2}, worker_id="agent-a")
    assert get_instance(claimed.instance_id).results == {"held_step": {"x": 2}}


def test_the_claiming_process_needs_no_worker_id_but_another_process_does(claimed: door.Task,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    door._door.reset()  # another process: it never saw this claim
    with pytest.raises(NotLeaseHolder, match=r"not '.+:\d+'"):  # it would be this process's host:pid
        complete_task(claimed.id)
    complete_task(claimed.id, worker_id="agent-a")
    assert get_instance(claimed.instance_id).status == "done"


def test_the_seeds_loop_completes_what_it_fetched(backend: Backend) -> None:
    Workflow(id="loop", steps=[{"id": "validate_tax_id", "sla": "2m"}]).save()
    instance_id = start_workflow("loop", {"form_id": "F1"})
    task = fetch_task(topic="validate_tax_id", max_wait="1s")
    assert task is not None and task.worker_id == door.default_worker_id()
    complete_task(task.id)
    assert get_instance(instance_id).status == "done"
