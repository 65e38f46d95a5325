"""Pull workers (fetch_task / complete_task / fail_task) in real processes, beside push workers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

import oms
from act import LeaseLost, TaskAlreadyFinished, complete_task, extend_lease, fail_task, fetch_task
from oms import Workflow, get_instance, history, start_workflow, start_workflows
from oms.durations import utcnow
from oms.engine.door import Door
from oms.store import moves
from oms.store.db import transaction
from oms.store.tables import EventRow, tasks

from ..conftest import EPA, Backend
from ..workers import ROOT, WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

PUSH_EPA = ["collect_form", "charge_fee", "assign_inspector"]


def _spawn(backend: Backend, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, **backend.env, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _count(kind: str) -> int:
    with transaction() as session:
        return session.scalar(select(func.count()).select_from(EventRow).where(EventRow.kind == kind)) or 0


def test_the_seed_tax_validator_loop_serves_its_step_beside_push_workers(backend: Backend, tmp_path: Path) -> None:
    Workflow(**EPA).save()
    push = WorkerProcess(backend.env, tmp_path, PUSH_EPA)
    validator = _spawn(backend, tmp_path, str(ROOT / "examples/workers/tax_validator.py"))
    try:
        good = [start_workflow("epa_waste_reg", payload={"form_id": f"F8700-12-{n}"}) for n in range(5)]
        bad = start_workflow("epa_waste_reg", payload={"form_id": "F8700-12-X"})
        statuses = wait_finished([*good, bad])
    finally:
        validator.kill()
        validator.communicate()
        push.stop()
    assert statuses == {**{i: "done" for i in good}, bad: "failed"}
    for instance_id in good:
        info = get_instance(instance_id)
        assert [t.worker_id and ("@" in t.worker_id) for t in info.tasks] == [True, False, True, True]
        assert info.tasks[1].worker_id.endswith(f":{validator.pid}")  # type: ignore[union-attr]
        kinds = [e.kind for e in history(instance_id)]
        assert kinds.count("task.done") == 4 and kinds[-1] == "workflow.done"
    assert "IRS mismatch" in (get_instance(bad).error or "")


@pytest.mark.parametrize("processes,steps", [(8, 1000)])
def test_many_pull_workers_complete_every_step_exactly_once(
    postgres_backend: Backend, tmp_path: Path, processes: int, steps: int
) -> None:
    _exactly_once(postgres_backend, tmp_path, processes, steps)


def test_pull_workers_share_sqlite_across_processes(sqlite_backend: Backend, tmp_path: Path) -> None:
    _exactly_once(sqlite_backend, tmp_path, 4, 200)


def _exactly_once(backend: Backend, tmp_path: Path, processes: int, steps: int) -> None:
    Workflow(id="bulk", steps=[{"id": "bulk_step", "sla": "10m"}]).save()
    # every worker up and warm before the first step: the first one up could otherwise take every step before the
    # others are (seen twice in CI on SQLite with 200 steps, the second time with the workers merely spawned first)
    workers = [_spawn(backend, tmp_path, "-m", "tests.pull_worker", "bulk_step", "--idle", "2") for _ in
               range(processes)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    ids = [start_workflow("bulk", payload={"n": n}) for n in range(steps)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    completed = [int(o.strip().rsplit(" ", 1)[1]) for o in outputs]
    assert sum(completed) == steps, outputs
    assert sum(c > 0 for c in completed) >= 2  # the work was shared
    assert set(wait_finished(ids, timeout=10).values()) == {"done"}
    assert _count("task.started") == steps and _count("task.done") == steps and _count("workflow.done") == steps


def test_a_worker_that_dies_holding_a_lease_loses_the_step_to_another(backend: Backend, tmp_path: Path) -> None:
    Workflow(id="lease", steps=[{"id": "leased", "sla": "1m"}]).save()
    instance_id = start_workflow("lease", payload={})
    dying = _spawn(backend, tmp_path, "-m", "tests.pull_worker", "leased", "--die-after-fetch", "--lease", "1s")
    dying.communicate(timeout=30)
    assert dying.returncode == 9
    assert fetch_task("leased", max_wait=0) is None  # still leased to the dead worker
    task = fetch_task("leased", max_wait="5s")
    assert task is not None and task.attempt == 2 and task.instance_id == instance_id
    complete_task(task.id)
    assert [e.kind for e in history(instance_id)] == [
        "workflow.started", "task.queued", "task.started", "task.lease_expired", "task.retried", "task.started",
        "task.done", "workflow.done",
    ]


def test_a_step_whose_lease_lapsed_is_fetched_before_the_backlog_behind_it(backend: Backend) -> None:
    """A re-offered step keeps its place (its ready_at) and its deadline: its worker died, the citizen waited on."""
    Workflow(id="queue", steps=[{"id": "queued", "sla": "1h"}]).save()
    first = start_workflow("queue", payload={"n": 0})
    lost = fetch_task("queued", max_wait="2s", lease="0.3s", worker_id="dies")
    assert lost is not None and lost.instance_id == first
    backlog = [start_workflow("queue", payload={"n": n}) for n in range(1, 6)]  # ready after it
    time.sleep(Door.SWEEP_EVERY + 0.1)  # the lease lapses, and the next fetch sweeps the topic
    again = fetch_task("queued", max_wait="2s", worker_id="next")
    assert again is not None and (again.instance_id, again.attempt) == (first, 2)
    assert again.expires_at == lost.expires_at  # the clock was not restarted
    taken = [fetch_task("queued", max_wait="2s", worker_id="next") for _ in backlog]
    assert [task.instance_id for task in taken if task is not None] == backlog
    assert _count("task.lease_expired") == 1


def test_the_pull_claim_reads_its_topic_in_ready_order_through_its_index(postgres_backend: Backend) -> None:
    """The claim takes the oldest ``ready_at`` through a partial index of pending rows, in its order: no sort, no
    scan of the table (the planner picks the topic's index or the one of every topic, by their statistics)."""
    Workflow(id="queue", steps=[{"id": "queued", "sla": "1h"}]).save()
    Workflow(id="other", steps=[{"id": "elsewhere", "sla": "1h"}]).save()
    start_workflows("queue", [{"n": n} for n in range(3000)])
    start_workflows("other", [{"n": n} for n in range(3000)])
    now = utcnow()
    claim = moves.claim("w", now, now, tasks.c.topic == "queued", tasks.c.ready_at <= now, skip_locked=True)
    with transaction() as session:
        session.execute(text("ANALYZE oms_tasks"))
        compiled = claim.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in session.execute(text(f"EXPLAIN {compiled}")))
    assert "Index Scan using ix_oms_tasks_pending_" in plan and "Sort" not in plan and "Seq Scan" not in plan, plan


def test_late_calls_on_a_lost_lease_change_nothing(backend: Backend) -> None:
    Workflow(id="lease", steps=[{"id": "leased", "sla": "1m"}]).save()
    instance_id = start_workflow("lease", payload={})
    first = fetch_task("leased", max_wait="2s", lease="0.3s")
    assert first is not None
    time.sleep(0.4)
    second = fetch_task("leased", max_wait="2s", worker_id="second")
    assert second is not None and second.attempt == 2
    for call in (lambda: complete_task(first.id), lambda: fail_task(first.id, "too late"),
                 lambda: extend_lease(first.id, "1m")):
        with pytest.raises(LeaseLost, match="ran out, which ended the claim"):
            call()
    complete_task(second.id, {"ok": True})
    with pytest.raises(TaskAlreadyFinished, match="already done"):
        complete_task(second.id)
    kinds = Counter(e.kind for e in history(instance_id))
    assert kinds["task.done"] == 1 and kinds["workflow.done"] == 1 and kinds["task.lease_expired"] == 1
    assert get_instance(instance_id).results == {"leased": {"ok": True}}


def test_extend_lease_keeps_the_task(backend: Backend) -> None:
    Workflow(id="lease", steps=[{"id": "leased", "sla": "1m"}]).save()
    start_workflow("lease", payload={})
    task = fetch_task("leased", max_wait="2s", lease="0.5s")
    assert task is not None
    for _ in range(3):
        time.sleep(0.3)
        extend_lease(task.id, "0.5s")
    assert fetch_task("leased", max_wait=0) is None
    complete_task(task.id)


def test_fail_task_retries_then_fails(backend: Backend) -> None:
    Workflow(id="pf", steps=[{"id": "pulled", "sla": "1m", "retries": 1, "retry_backoff": "0.3s"}]).save()
    instance_id = start_workflow("pf", payload={})
    first = fetch_task("pulled", max_wait="2s")
    assert first is not None
    with pytest.raises(ValueError, match="reason must be a non-empty string"):
        fail_task(first.id, "")
    started = time.monotonic()  # before the failure: its backoff counts from inside fail_task, which may be slow
    fail_task(first.id, "IRS mismatch")
    second = fetch_task("pulled", max_wait="3s")
    assert second is not None and second.attempt == 2
    assert time.monotonic() - started >= 0.2  # waited out the backoff
    fail_task(second.id, "IRS mismatch again")
    info = get_instance(instance_id)
    assert info.status == "failed" and "IRS mismatch again" in (info.error or "")


def test_fetch_waits_max_wait_then_returns_none_and_wakes_promptly(backend: Backend) -> None:
    Workflow(id="wake", steps=[{"id": "wake_step", "sla": "1m"}]).save()
    assert fetch_task("wake_step", max_wait="0.05s") is None  # connect first: time only the wait
    started = time.monotonic()
    assert fetch_task("wake_step", max_wait="1s") is None
    assert 0.95 <= time.monotonic() - started < 1.5
    _wakes_promptly("wake_step")  # a long poll, not a slow loop


def _wakes_promptly(topic: str) -> None:
    """A fetch on ``topic`` is woken by a start of the saved workflow ``wake`` half a second later, not by its
    max_wait."""
    published: list[float] = []

    def offer_later() -> None:
        time.sleep(0.5)
        published.append(time.monotonic())
        start_workflow("wake", payload={})

    threading.Thread(target=offer_later).start()
    task = fetch_task(topic, max_wait="10s")
    woke = time.monotonic()
    assert task is not None
    assert woke - published[0] < 0.5, "woken by max_wait: the fetch waited on another broker"
    complete_task(task.id)


def test_fetch_waits_on_the_embedded_broker_configured_last(sqlite_backend: Backend, tmp_path: Path) -> None:
    """The embedded broker's URL is the same for every folder: a fetch after ``oms.configure(home=...)`` waits on
    the new folder, not on the connection it opened to the old one."""
    Workflow(id="wake", steps=[{"id": "wake_step", "sla": "1m"}]).save()
    assert fetch_task("wake_step", max_wait="0.05s") is None  # a connection to the first folder
    oms.configure(database_url=f"sqlite:///{tmp_path / 'other.db'}", home=tmp_path / "other")
    Workflow(id="wake", steps=[{"id": "wake_step", "sla": "1m"}]).save()  # in the new database
    _wakes_promptly("wake_step")


def test_push_and_pull_on_one_topic_run_each_step_once(backend: Backend, tmp_path: Path) -> None:
    Workflow(id="shared", steps=[{"id": "charge_fee", "sla": "1m"}]).save()
    push = WorkerProcess(backend.env, tmp_path, ["charge_fee"])
    puller = _spawn(backend, tmp_path, "-m", "tests.pull_worker", "charge_fee", "--idle", "3")
    try:
        ids = [start_workflow("shared", payload={"form_id": f"F-{n}"}) for n in range(60)]
        wait_finished(ids)
        pulled = int(puller.communicate(timeout=30)[0].strip().rsplit(" ", 1)[1])
    finally:
        push.stop()
    assert _count("task.started") == 60 and _count("task.done") == 60
    by_push = sum(1 for i in ids if "@" in (get_instance(i).tasks[0].worker_id or ""))
    assert by_push + pulled == 60
