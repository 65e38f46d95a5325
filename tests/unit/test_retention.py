"""``oms prune``: finished instances go with their tasks and events, in batches; running ones keep every row."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from oms import Workflow, cancel_workflow
from oms.engine import door
from oms.engine.starts import start_instance
from oms.ops.retention import prune
from oms.store import notices
from oms.store.catalog import load_definition
from oms.store.db import transaction
from oms.store.runs import PRUNE, last_run
from oms.store.tables import EventRow, InstanceRow, NoticeAttemptRow, NoticeRow, TaskRow

from ..conftest import Backend

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _start(now: datetime) -> str:
    with transaction() as s:
        definition, version = load_definition(s, "two")
        instance, _ = start_instance(s, definition, version, {"n": 1}, now)
    return instance.id


def _run(instance_id: str, now: datetime, *, fail: bool = False) -> None:
    for index in range(2):
        task = door.claim_step(instance_id, index, "w1", now=now)
        assert task is not None
        if fail:
            door.fail(task, "no", now=now)
            return
        door.complete(task, None, now=now)


def _rows() -> Counter[str]:
    """``{instance_id: rows}``: its tasks and events, plus one for itself."""
    counts: Counter[str] = Counter()
    with transaction() as s:
        for table in (InstanceRow.id, TaskRow.instance_id, EventRow.instance_id):
            for instance_id, n in s.execute(select(table, func.count()).group_by(table)):
                counts[instance_id] += n
    return counts


def test_prune_removes_what_finished_before_the_cutoff_in_batches(backend: Backend) -> None:
    Workflow(id="two", steps=[{"id": "a", "sla": "1h"}, {"id": "b", "sla": "1h"}]).save()
    old_done = [_start(T0) for _ in range(5)]
    for instance_id in old_done:
        _run(instance_id, T0)
    old_failed = [_start(T0) for _ in range(2)]
    for instance_id in old_failed:
        _run(instance_id, T0, fail=True)
    cancelled = _start(T0)
    cancel_workflow(cancelled, "duplicate")  # finished now: after the cutoff
    running = [_start(T0) for _ in range(2)]  # started long ago, still running
    claimed = door.claim_step(running[0], 0, "w1", now=T0)
    assert claimed is not None
    door.extend(claimed.id, "11d", now=T0)  # a long claim, kept
    recent = _start(T0 + 10 * DAY)
    _run(recent, T0 + 10 * DAY)
    before = _rows()
    old = old_done + old_failed

    dry = prune(5 * DAY, dry_run=True, now=T0 + 10 * DAY)
    assert (dry.instances, dry.tasks, dry.events) == (7, 5 * 2 + 2, 5 * 8 + 2 * 5) and _rows() == before
    assert dry.finished_before == T0 + 5 * DAY

    report = prune(5 * DAY, batch=3, now=T0 + 10 * DAY)
    assert (report.instances, report.tasks, report.events, report.batches) == (7, 12, 50, 3)
    after = _rows()
    assert not any(after[i] for i in old)
    assert {i: after[i] for i in [*running, recent, cancelled]} == {i: before[i] for i in [*running, recent, cancelled]}
    door.complete(claimed, None, now=T0 + 10 * DAY)  # a running instance goes on as if nothing happened
    run = last_run(PRUNE)
    assert run is not None and run.rows == 7 and run.details["events"] == 50
    assert prune(5 * DAY, now=T0 + 10 * DAY).instances == 0


def _notice(instance_id: str | None, created: datetime, status: str, attempts: int = 0) -> str:
    """A notice in the outbox as its sender left it, with ``attempts`` recorded attempts."""
    with transaction() as s:
        [notice_id] = notices.add(s.connection(), [notices.Notice("two", "group:inspectors", {}, instance_id)],
                                  created)
        s.execute(update(NoticeRow).where(NoticeRow.id == notice_id).values(status=status))
        for _ in range(attempts):
            s.add(NoticeAttemptRow(notice_id=notice_id, at=created, ok=status == "sent"))
    return notice_id


def test_prune_takes_the_notices_of_what_it_pruned_and_leaves_the_rest(backend: Backend) -> None:
    Workflow(id="two", steps=[{"id": "a", "sla": "1h"}, {"id": "b", "sla": "1h"}]).save()
    done, running = _start(T0), _start(T0)
    _run(done, T0)
    _notice(done, T0, "sent", attempts=2), _notice(None, T0, "failed", attempts=3)  # both go, attempts too
    told = _notice(running, T0, "sent", attempts=1)  # its instance is still there
    kept = {told, _notice(None, T0, "pending"),  # its sender has not given up on it
            _notice(None, T0 + 9 * DAY, "sent")}  # after the cutoff

    assert prune(5 * DAY, dry_run=True, now=T0 + 10 * DAY).notices == 2
    report = prune(5 * DAY, batch=1, now=T0 + 10 * DAY)
    assert (report.instances, report.notices) == (1, 2)
    with transaction() as s:
        assert set(s.scalars(select(NoticeRow.id))) == kept
        assert list(s.scalars(select(NoticeAttemptRow.notice_id))) == [told]
    run = last_run(PRUNE)
    assert run is not None and run.details["notices"] == 2
    assert prune(5 * DAY, now=T0 + 10 * DAY).notices == 0


def test_beat_prunes_every_hour_when_oms_retention_is_set(backend: Backend) -> None:
    """``OMS_RETENTION`` adds ``oms.prune`` to beat's schedule; the task prunes what finished before it."""
    import os
    import subprocess
    import sys

    import oms
    from oms.ops.tasks import prune_task

    def schedule(**env: str) -> str:
        code = "import celeryconfig as c; print(c.beat_schedule.get('oms-prune'))"
        return subprocess.run([sys.executable, "-c", code], env={**os.environ, **backend.env, **env},
                              capture_output=True, text=True, check=True).stdout

    assert schedule() == "None\n"
    assert "'task': 'oms.prune', 'schedule': 3600.0" in schedule(OMS_RETENTION="90d")

    Workflow(id="two", steps=[{"id": "a", "sla": "1h"}, {"id": "b", "sla": "1h"}]).save()
    old = _start(T0)
    _run(old, T0)  # finished on T0, long before 90 days ago
    recent = _start(T0)
    cancel_workflow(recent, "finished now")
    assert prune_task() == 0  # no OMS_RETENTION: the task prunes nothing
    oms.configure(database_url=backend.database_url, broker_url=backend.broker_url, home=backend.home,
                  retention=90 * DAY)
    try:
        assert prune_task() == 1
    finally:
        oms.configure(database_url=backend.database_url, broker_url=backend.broker_url, home=backend.home)
    assert set(_rows()) == {recent}
