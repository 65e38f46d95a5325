"""The durability invariant, checked at the end of every fault-injection test."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import select

from oms.states import StepKind
from oms.store.db import transaction
from oms.store.tables import EventRow, InstanceRow, TaskRow

#: Event kinds that create a task row, and those that finish one.
CREATES = {"task.queued", "task.retried"}
#: Topics of steps nobody claims: a signal or the clock ends them, from pending.
UNCLAIMED = {StepKind.WAIT.topic, StepKind.TIMER.topic}
FINISHES = {"done": {"task.done"}, "failed": {"task.failed"}, "lapsed": {"task.lease_expired"},
            "cancelled": {"task.cancelled"}}


def assert_consistent(instance_ids: list[str], final: str = "done") -> None:
    """Every instance ``final``; one ``task.done`` per completed step; no step done unstarted, but a waiting step
    or a timer, which nobody starts; the event log and the task rows tell the same story."""
    with transaction() as s:
        instances = {r.id: r for r in s.scalars(select(InstanceRow).where(InstanceRow.id.in_(instance_ids)))}
        tasks = s.scalars(select(TaskRow).where(TaskRow.instance_id.in_(instance_ids))).all()
        events = s.scalars(select(EventRow).where(EventRow.instance_id.in_(instance_ids)).order_by(EventRow.id)).all()
    assert len(instances) == len(instance_ids)
    not_final = {i: r.status for i, r in instances.items() if r.status != final}
    assert not not_final, f"{len(not_final)} instance(s) not {final}: {list(not_final.items())[:3]}"

    by_task: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event.task_id:
            by_task[event.task_id].append(event.kind)
    done_per_step = Counter((t.instance_id, t.step_index) for t in tasks if t.status == "done")
    assert all(n == 1 for n in done_per_step.values()), "a step completed twice"
    done_events = Counter((e.instance_id, e.step_id) for e in events if e.kind == "task.done")
    assert all(n == 1 for n in done_events.values()), "two task.done events for one step"
    for task in tasks:
        kinds = by_task[task.id]
        assert sum(k in CREATES for k in kinds) == 1, (task.id, kinds)
        if task.topic in UNCLAIMED:
            assert "task.started" not in kinds, (task.id, kinds)
        elif task.status == "done":
            assert "task.started" in kinds and kinds.index("task.started") < kinds.index("task.done"), kinds
        finished = [k for k in kinds if any(k in ends for ends in FINISHES.values())]
        if task.status in FINISHES:
            assert len(finished) == 1 and finished[0] in FINISHES[task.status], (task.id, task.status, kinds)
        else:
            assert not finished, (task.id, task.status, kinds)
    if final == "done":
        for instance_id, instance in instances.items():
            steps = {t.step_index for t in tasks if t.instance_id == instance_id and t.status == "done"}
            assert steps == set(range(len(steps))) and len(steps) >= 1, (instance_id, steps)
            # the scanner may record a breach of a step that finished late after the instance did
            assert [e.kind for e in events if e.instance_id == instance_id and ".sla_" not in e.kind][-1] == \
                "workflow.done"
