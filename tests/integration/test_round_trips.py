"""Round trips to PostgreSQL per transition, counted in libpq's own protocol trace.

Each worker transition is one prepared statement in one round trip: a regression
that adds a query, a BEGIN/COMMIT or a re-prepare fails here. The count is what
the server answered (``ReadyForQuery`` messages), traced on every pooled
connection checked out while the transition runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from oms import Workflow, scan_sla, start_workflow, start_workflows
from oms.engine import door
from oms.exceptions import InstanceFinished
from oms.store.db import database

from ..conftest import Backend

pytestmark = pytest.mark.integration


class Trace:
    """The libpq protocol trace of every connection checked out from the pool, to one file."""

    def __init__(self) -> None:
        self.file = tempfile.NamedTemporaryFile(prefix="oms-pq-trace-", delete=False)  # noqa: SIM115

    def checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pgconn = dbapi_connection.pgconn
        pgconn.trace(self.file.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)

    def checkin(self, dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None and not dbapi_connection.closed:
            dbapi_connection.pgconn.untrace()

    def messages(self) -> list[tuple[str, str]]:
        """``(direction, message)``: ``F`` from the client, ``B`` from the server."""
        lines = Path(self.file.name).read_text().splitlines()
        return [(line.split("\t")[0], line.split("\t")[2].split()[0]) for line in lines if line.count("\t") >= 2]


@contextmanager
def traced() -> Iterator[Trace]:
    db = database()
    db.store.heartbeat([], door.utcnow(), door.utcnow())  # opens the hot path's own pool, to be traced too
    trace = Trace()
    for engine in db.engines:
        event.listen(engine, "checkout", trace.checkout)
        event.listen(engine, "checkin", trace.checkin)
    try:
        yield trace
    finally:
        for engine in db.engines:
            event.remove(engine, "checkout", trace.checkout)
            event.remove(engine, "checkin", trace.checkin)
        trace.file.close()


def round_trips(action: Callable[[], object]) -> tuple[int, int]:
    """``(round trips, statements parsed)`` of one call of ``action``."""
    with traced() as trace:
        action()
    messages = trace.messages()
    return (sum(m == ("B", "ReadyForQuery") for m in messages), sum(m == ("F", "Parse") for m in messages))


@pytest.fixture
def pg(postgres_backend: Backend) -> Backend:
    Workflow(id="rt", steps=[{"id": "rt_a", "sla": "1m", "retries": 1}, {"id": "rt_b", "sla": "1m"}]).save()
    return postgres_backend


def _claimed(instance_id: str, index: int = 0) -> door.Task:
    task = door.claim_step(instance_id, index, "w1")
    assert task is not None
    return task


def test_each_worker_transition_is_one_round_trip(pg: Backend) -> None:
    def warm_then_count(make: Callable[[], Callable[[], object]]) -> tuple[int, int]:
        make()()  # the first call prepares the statement and reads the definition
        return round_trips(make())

    assert warm_then_count(lambda: lambda: start_workflow("rt", {"n": 1})) == (1, 0)
    starts = [start_workflow("rt", {"n": n}) for n in range(10)]
    assert warm_then_count(lambda: (lambda i=starts.pop(): door.claim_step(i, 0, "w1"))) == (1, 0)
    assert warm_then_count(lambda: (lambda t=_claimed(starts.pop()): door.complete(t, {"ok": True}))) == (1, 0)
    assert warm_then_count(lambda: (lambda t=_claimed(starts.pop()): door.fail(t, "retried"))) == (1, 0)
    assert warm_then_count(lambda: (lambda t=_claimed(starts.pop()): door.extend(t.id, "5m"))) == (1, 0)
    assert warm_then_count(lambda: (lambda t=_claimed(starts.pop()): door.heartbeat([t.id]))) == (1, 0)
    assert warm_then_count(lambda: lambda: start_workflows("rt", [{"n": 1}, {"n": 2}, {"n": 3}])) == (1, 0)


def test_the_last_step_and_a_final_failure_are_one_round_trip_each(pg: Backend) -> None:
    def last_step() -> Callable[[], object]:
        first = _claimed(start_workflow("rt", {}))
        door.complete(first, None, chained=True)
        second = _claimed(first.instance_id, 1)
        return lambda: door.complete(second, None)

    def final_failure() -> Callable[[], object]:
        first = _claimed(start_workflow("rt", {}))
        door.fail(first, "once")
        retry = door.claim_step(first.instance_id, 0, "w1", now=door.utcnow() + timedelta(seconds=5))
        assert retry is not None and retry.failures == 1
        return lambda: door.fail(retry, "twice")

    for make in (last_step, final_failure):
        make()()
        assert round_trips(make()) == (1, 0)


def test_a_pull_fetch_and_its_completion_are_one_round_trip_each(pg: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(door.Door, "SWEEP_EVERY", 3600.0)  # a fetch also sweeps lapsed leases, once a second
    for n in range(3):
        start_workflow("rt", {"n": n})
    lease = timedelta(minutes=5)
    first, _ = door.claim_topic("rt_a", "p1", lease)
    assert first is not None
    door.complete(first.id)
    found: list[door.Task | None] = []
    assert round_trips(lambda: found.append(door.claim_topic("rt_a", "p1", lease)[0])) == (1, 0)
    task = found[0]
    assert task is not None
    assert round_trips(lambda: door.complete(task.id, {"pulled": True})) == (1, 0)


def test_durable_claims_are_one_round_trip_too(pg: Backend) -> None:
    import oms

    oms.configure(database_url=pg.database_url, broker_url=pg.broker_url, home=pg.home, durable_claims=True)
    try:
        starts = [start_workflow("rt", {"n": n}) for n in range(2)]
        assert door.claim_step(starts[0], 0, "w1") is not None  # prepares the statement
        claimed: list[door.Task | None] = []
        assert round_trips(lambda: claimed.append(door.claim_step(starts[1], 0, "w1"))) == (1, 0)
        assert claimed[0] is not None and claimed[0].worker_id == "w1"
    finally:
        oms.configure(database_url=pg.database_url, broker_url=pg.broker_url, home=pg.home)


def test_fan_out_join_and_a_failing_branch_are_one_round_trip_each(pg: Backend) -> None:
    Workflow(id="rt_diamond", steps=[
        {"id": "rt_a", "sla": "1m"}, {"id": "rt_b", "sla": "1m"}, {"id": "rt_c", "sla": "1m", "after": ["rt_a"]},
        {"id": "rt_d", "sla": "1m", "after": ["rt_b", "rt_c"]},
    ]).save()

    def branches() -> tuple[door.Task, door.Task]:
        first = _claimed(start_workflow("rt_diamond", {}))
        assert [d.from_step for d in door.complete(first).offered] == [1, 2]
        return _claimed(first.instance_id, 1), _claimed(first.instance_id, 2)

    b, c = branches()  # prepares the statements (each mix of NULL and typed parameters is its own)
    door.complete(b)
    door.complete(c)
    b, c = branches()
    door.fail(b, "down")
    first = _claimed(start_workflow("rt_diamond", {}))
    assert round_trips(lambda: door.complete(first)) == (1, 0)  # the fan-out
    b, c = _claimed(first.instance_id, 1), _claimed(first.instance_id, 2)
    assert round_trips(lambda: door.complete(b)) == (1, 0)  # the join still waits
    offered: list[list[int]] = []
    assert round_trips(lambda: offered.append([d.from_step for d in door.complete(c).offered])) == (1, 0)
    assert offered == [[3]]  # the join, offered by the last predecessor
    b, c = branches()
    assert round_trips(lambda: door.fail(b, "down")) == (1, 0)  # fails the instance, cancels c
    with pytest.raises(InstanceFinished):
        door.complete(c)


def test_a_mapped_steps_items_are_one_round_trip_each_but_the_last(pg: Backend) -> None:
    Workflow(id="rt_map", steps=[{"id": "rt_each", "sla": "1m", "map": "payload.items"},
                                 {"id": "rt_after", "sla": "1m"}]).save()
    instance_id = start_workflow("rt_map", {"items": list(range(5))})
    door.complete(door.claim_step(instance_id, 0, "w1", item_index=0))  # type: ignore[arg-type]  # prepares
    claimed: list[door.Task | None] = []
    assert round_trips(lambda: claimed.append(door.claim_step(instance_id, 0, "w1", item_index=1))) == (1, 0)
    assert claimed[0] is not None and claimed[0].item == 1
    assert round_trips(lambda: door.complete(claimed[0])) == (1, 0)  # type: ignore[arg-type]
    for k in (2, 3):
        door.complete(door.claim_step(instance_id, 0, "w1", item_index=k))  # type: ignore[arg-type]
    last = door.claim_step(instance_id, 0, "w1", item_index=4)
    assert last is not None
    trips, _ = round_trips(lambda: door.complete(last))
    assert trips > 1  # the last item gathers the results and offers what follows, in one transaction
    after = door.claim_step(instance_id, 1, "w1")
    assert after is not None and after.results == {"rt_each": [None] * 5}


def test_a_batch_fetch_and_a_batch_of_completions_are_one_round_trip_each(pg: Backend,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(door.Door, "SWEEP_EVERY", 3600.0)  # a fetch also sweeps lapsed leases, once a second
    start_workflows("rt", [{"n": n} for n in range(30)])
    lease = timedelta(minutes=5)
    first, _ = door.claim_tasks("rt_a", "p1", lease, 10)  # prepares the statements
    door.complete_many([(task.id, {"ok": True}) for task in first])
    found: list[door.Task] = []
    assert round_trips(lambda: found.extend(door.claim_tasks("rt_a", "p1", lease, 10)[0])) == (1, 0)
    assert len(found) == 10
    outcomes: list[door.TaskOutcome] = []
    # BEGIN, every completion and COMMIT in one pipeline: one round trip (BEGIN and COMMIT are parsed, not prepared)
    assert round_trips(lambda: outcomes.extend(door.complete_many([(t.id, {"ok": True}) for t in found]))) == (1, 2)
    assert {o.status for o in outcomes} == {"done"}


def test_a_scan_with_no_news_is_a_round_trip_per_question_its_statements_prepared(pg: Backend) -> None:
    """What is due (one probe of every partial index), each topic's outlook (``rt_a``, ``rt_b``), the run's record.

    psycopg forgets every statement a connection prepared at each ROLLBACK: a read that
    ended with one (a connection closed outside a transaction) kept the scan's
    statements from ever being prepared."""
    instance_id = start_workflow("rt", {})
    _claimed(instance_id)  # a running claim, so that the lease sweep has one to look at
    for _ in range(7):  # psycopg prepares a statement at its fifth run on a connection
        scan_sla()
    trips, parsed = round_trips(scan_sla)
    assert parsed == 0, f"a warmed no-news scan parsed {parsed} statements in {trips} round trips"
    assert trips == 4
