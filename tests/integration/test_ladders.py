"""Escalation ladders on PostgreSQL: two scanners racing fire each rung exactly once (the row lock, and the rung
counter moved under it), notices, reassignments and escalation tasks included."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

import oms
from oms import Workflow, scan_sla
from oms.engine.starts import start_instances
from oms.sla.advance import ScanReport
from oms.store.catalog import load_definition
from oms.store.db import transaction
from oms.store.tables import ChannelRow, EventRow, InstanceRow, NoticeRow, TaskRow

from ..conftest import Backend
from .test_races import _together

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
CASES = 60
LADDER = [
    {"at": "10%", "notify": ["assignee", "race-pager"]},
    {"at": "30%", "notify": ["group:team_leads"], "topic": "governance"},
    {"at": "100%", "notify": ["group:supervisors"], "reassign": {"groups": ["supervisors"]}},
    {"at": "100% + 1m", "notify": ["race-pager"]},
]


def test_two_scanners_racing_fire_each_rung_exactly_once(postgres_backend: Backend) -> None:
    oms.create_user("alice", ["inspectors"])
    oms.create_user("bob", ["team_leads"])
    oms.create_user("dave", ["supervisors"], role="supervisor")
    with transaction() as s:
        s.execute(delete(ChannelRow).where(ChannelRow.name == "race-pager"))
        s.add(ChannelRow(name="race-pager", kind="webhook", url="https://hooks.example.invalid/p",
                         created_at=datetime.now(UTC)))
    Workflow(id="race_ladder", steps=[{"id": "inspect", "sla": "10m", "assign": {"groups": ["inspectors"]},
                                       "escalations": LADDER}]).save()
    with transaction() as s:
        definition, version = load_definition(s, "race_ladder")
        ids = [d.instance_id for d in start_instances(s, definition, version, [{"n": n} for n in range(CASES)], T0)]
    with transaction() as s:
        tasks = list(s.scalars(select(TaskRow.id).where(TaskRow.instance_id.in_(ids))))
    for task_id in tasks[::2]:  # half of them held by alice: her claim goes back at 100%
        oms.claim(task_id, "alice", now=T0 + 30 * timedelta(seconds=1))

    fired = 0
    for minute in (1, 2, 3, 5, 9, 10, 11, 12, 20):
        reports = _together(lambda m=minute: scan_sla(T0 + m * M, batch=7),  # type: ignore[misc]
                            lambda m=minute: scan_sla(T0 + m * M, batch=7))  # type: ignore[misc]
        assert all(isinstance(r, ScanReport) for r in reports), reports
        fired += sum(r.escalated for r in reports if isinstance(r, ScanReport))
    assert fired == CASES * len(LADDER)

    with transaction() as s:
        escalated = Counter((e.task_id, e.data["rung"]) for e in s.scalars(
            select(EventRow).where(EventRow.instance_id.in_(ids), EventRow.kind == "task.escalated")))
        assert len(escalated) == CASES * len(LADDER) and set(escalated.values()) == {1}
        notices = Counter((n.task_id, n.rung, n.target) for n in s.scalars(
            select(NoticeRow).where(NoticeRow.instance_id.in_(ids))))
        assert set(notices.values()) == {1}
        assert len(notices) == CASES * 5  # rung 1 tells two targets, the others one each
        rows = list(s.scalars(select(TaskRow).where(TaskRow.instance_id.in_(ids))))
        assert {(t.rung, t.status, t.worker_id, t.light) for t in rows} == {(4, "pending", None, "red")}
        assert all(t.assign == {"users": [], "groups": ["supervisors"]} for t in rows)
        assert all(t.sla_check_at is None for t in rows)
        reassigned = Counter(e.task_id for e in s.scalars(
            select(EventRow).where(EventRow.instance_id.in_(ids), EventRow.kind == "task.reassigned")))
        assert len(reassigned) == CASES and set(reassigned.values()) == {1}
        released = list(s.scalars(select(EventRow.task_id).where(EventRow.instance_id.in_(ids),
                                                                 EventRow.kind == "task.released")))
        assert sorted(released) == sorted(tasks[::2])
        assert len(list(s.scalars(select(InstanceRow.id).where(
            InstanceRow.workflow_id == "oms.escalation.governance")))) == CASES
    assert len(oms.inbox("dave", now=T0 + 20 * M)) == CASES
