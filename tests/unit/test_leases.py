"""The rule for leases: the lapse itself ends the claim, whether or not a sweep has re-offered the step yet.

Regression (issue 12, 4.10): a lease that had lapsed but not yet been swept could
still be completed or extended, although ``fetch_task`` said the lapse ends the
claim. Until ``lease_expires_at`` (inclusive) the claim holds; after it, every
call on it raises ``LeaseLost`` and changes nothing, and the next sweep offers the
step again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from oms import Workflow, history, scan_sla
from oms.engine import door
from oms.engine.starts import start_instance
from oms.exceptions import LeaseLost
from oms.store.catalog import load_definition
from oms.store.db import transaction
from oms.store.tables import TaskRow

from ..conftest import Backend

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_a_lapsed_lease_ends_the_claim_before_any_sweep(backend: Backend) -> None:
    Workflow(id="leased", steps=[{"id": "s", "sla": "1h", "retries": 1}]).save()
    with transaction() as s:
        definition, version = load_definition(s, "leased")
        instance, _ = start_instance(s, definition, version, {}, T0)
    task = door.claim_step(instance.id, 0, "w1", now=T0)
    assert task is not None and task.lease_expires_at == T0 + 40 * S  # OMS_WORKER_LEASE
    assert door.extend(task.id, "10s", now=T0 + 40 * S) == T0 + 50 * S  # at the very moment, the claim holds
    assert door.heartbeat([task.id], now=T0 + 50 * S) == 1  # and so does a heartbeat: until T0 + 90 s
    before = [e.kind for e in history(instance.id)]

    late = T0 + 90 * S + timedelta(milliseconds=1)
    for call in (lambda: door.complete(task.id, {"late": True}, now=late),
                 lambda: door.fail(task.id, "too late", now=late),
                 lambda: door.extend(task.id, "1m", now=late)):
        with pytest.raises(LeaseLost, match="ran out, which ended the claim"):
            call()
    assert door.heartbeat([task.id], now=late) == 0  # a heartbeat does not revive it either
    assert [e.kind for e in history(instance.id)] == before  # nothing changed, nothing swept yet

    [offer] = door.sweep(now=late)
    again = door.claim_step(instance.id, 0, "w2", now=late)
    assert offer.from_step == 0 and again is not None and again.attempt == 2
    door.complete(again, None, now=late)
    assert [e.kind for e in history(instance.id)][-5:] == [
        "task.lease_expired", "task.retried", "task.started", "task.done", "workflow.done"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_step_offered_again_keeps_its_place_its_deadline_and_its_warning(
        request: pytest.FixtureRequest, dialect: str) -> None:
    """Its worker died: the re-offer is ready since the step was (pull claims take it before later steps), its
    deadline stands, and the warning already recorded is not recorded again. On both stores: each writes the row."""
    request.getfixturevalue(f"{dialect}_backend")
    Workflow(id="kept", steps=[{"id": "s", "sla": "100s"}]).save()
    with transaction() as s:
        definition, version = load_definition(s, "kept")
        instance, _ = start_instance(s, definition, version, {}, T0)
    task = door.claim_step(instance.id, 0, "w1", now=T0)
    assert task is not None
    door.extend(task.id, "85s", now=T0)
    assert scan_sla(T0 + 81 * S).warnings == 1
    [offer] = door.sweep(now=T0 + 86 * S)
    assert offer.countdown == 0
    with transaction() as s:
        row = s.scalars(select(TaskRow).where(TaskRow.instance_id == instance.id, TaskRow.attempt == 2)).one()
    assert (row.ready_at, row.expires_at, row.light) == (T0, T0 + 100 * S, "yellow")
    assert row.dispatched_at == T0 + 86 * S  # offered now: the reconciler counts from here
    assert scan_sla(T0 + 90 * S).warnings == 0
    assert scan_sla(T0 + 101 * S).violations == 1
    kinds = [e.kind for e in history(instance.id)]
    assert kinds.count("task.sla_warning") == 1 and kinds.count("task.sla_violated") == 1, kinds
