"""Batch pull workers in real processes on PostgreSQL: many claiming and completing at once, each step once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from oms import Workflow, start_workflows
from oms.store.db import transaction
from oms.store.tables import EventRow, TaskRow

from ..conftest import Backend
from ..invariants import assert_consistent
from ..workers import wait_finished
from .test_pull_workers import _spawn

pytestmark = pytest.mark.integration

#: A fan-out of six branches on one topic and their join: branches of one instance are completed in one batch,
#: or in batches of different processes at the same moment.
FAN = {"id": "batch_fan", "steps": [
    {"id": "batch_split", "sla": "10m"},
    *({"id": f"batch_b{n}", "topic": "batch_branch", "sla": "10m", "after": ["batch_split"]} for n in range(6)),
    {"id": "batch_join", "sla": "10m", "after": [f"batch_b{n}" for n in range(6)]},
]}


def test_batch_workers_in_four_processes_do_every_step_once_and_each_join_once(
        postgres_backend: Backend, tmp_path: Path) -> None:
    Workflow(id="batch_one", steps=[{"id": "batch_step", "sla": "10m"}]).save()
    Workflow(**FAN).save()  # type: ignore[arg-type]
    topics = ["batch_step", "batch_split", "batch_branch", "batch_join"]
    # the workers first, then the steps: every worker is polling when the steps arrive
    workers = [_spawn(postgres_backend, tmp_path, "-m", "tests.batch_worker", *topics, "--max-tasks", "7",
                      "--idle", "3") for _ in range(4)]
    try:
        ones = start_workflows("batch_one", [{"n": n} for n in range(600)])
        fans = start_workflows("batch_fan", [{"n": n} for n in range(60)])
        outputs = [w.communicate(timeout=300)[0] for w in workers]
    finally:
        for worker in workers:
            worker.kill()
    counts = [o.split() for o in outputs]
    assert all(c[0] == "completed" for c in counts), outputs
    completed = [int(c[1]) for c in counts]
    steps = 600 + 60 * 8
    assert sum(completed) == steps and sum(int(c[3]) for c in counts) == 0, outputs
    assert sum(c > 0 for c in completed) >= 2  # the work was shared
    assert set(wait_finished(ones + fans, timeout=10).values()) == {"done"}
    assert_consistent(ones + fans)
    with transaction() as s:
        started = Counter(s.scalars(select(EventRow.task_id).where(EventRow.kind == "task.started")))
        queued = Counter(s.execute(select(EventRow.instance_id, EventRow.step_id).where(
            EventRow.kind == "task.queued")).tuples())
        claims = s.execute(select(TaskRow.id, TaskRow.attempt)).all()
    assert len(started) == steps and set(started.values()) == {1}, "a step claimed twice"
    assert {attempt for _, attempt in claims} == {1}  # no lease lapsed, nothing offered again
    assert all(queued[(i, "batch_join")] == 1 for i in fans), "a join offered twice"
