"""The prediction's bounds: what two partial indexes tell of a topic's queue, so that a scan reads it only when a
light can move, and moves the same lights as reading it every time would."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from oms import Workflow, scan_sla
from oms.engine import control, door
from oms.exceptions import InstanceFinished, TaskAlreadyFinished
from oms.sla import predict
from oms.store.db import database, transaction
from oms.store.tables import TaskRow

from ..conftest import Backend
from .test_predict import LEASE, T0, S, _burst, _history_at_one_per_second, _lights, _queue, _serve, fixed_pace

#: Workflows whose one step is on topic ``review``, each with its own SLA.
SLAS = {"review_w": "60s", "review_fast": "20s", "review_slow": "10m", "review_day": "1h"}


def _save(*workflows: str) -> None:
    for workflow in workflows:
        Workflow(id=workflow, steps=[{"id": "review", "sla": SLAS[workflow], "retries": 1}]).save()


def _bounds() -> predict.Bounds:
    with transaction() as s:
        return predict.bounds(s, "review")


def _read_in_python() -> predict.Bounds:
    """The bounds as reading every queued row of the topic finds them."""
    with transaction() as s:
        rows = s.scalars(select(TaskRow).where(TaskRow.topic == "review", TaskRow.status == "pending")).all()
    green = [r.expires_at for r in rows if r.light == "green" and r.light_reason is None]
    predicted = [r for r in rows if r.light == "yellow" and r.light_reason == "predicted"]
    return predict.Bounds(min(green, default=None), min((r.ready_at for r in predicted), default=None),
                          max((r.warn_at for r in predicted), default=None))


def _expires(instance_id: str) -> datetime:
    with transaction() as s:
        return s.scalars(select(TaskRow.expires_at).where(TaskRow.instance_id == instance_id,
                                                          TaskRow.status == "pending")).one()


@contextmanager
def _queue_reads() -> Iterator[list[str]]:
    """The statements that number a topic's queue (the prediction's read of it), as they run."""
    seen: list[str] = []
    with _statements(seen, "row_number"):
        yield seen


@contextmanager
def _statements(seen: list[str], containing: str = "") -> Iterator[None]:
    """Each statement run meanwhile (those ``containing`` a text), into ``seen``."""

    def spy(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if containing in statement:
            seen.append(statement)

    engines = {database().engine, database().reader}  # a scan's reads outside a transaction, its transactions
    for engine in engines:
        event.listen(engine, "before_cursor_execute", spy)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", spy)


def test_the_bounds_follow_the_queue_through_claims_completions_cancellations_and_re_offers(backend: Backend) -> None:
    _save("review_w", "review_fast", "review_slow")
    assert _bounds() == _read_in_python() and _bounds().empty
    [fast] = _queue(1, T0, "review_fast")
    [normal] = _queue(1, T0 + S, "review_w")
    [slow] = _queue(1, T0 + 2 * S, "review_slow")
    assert _bounds() == _read_in_python() == predict.Bounds(T0 + 20 * S, None, None)
    # claimed (the oldest first): the next soonest deadline; its completion changes nothing queued
    task, _ = door.claim_topic("review", "w1", LEASE, now=T0 + 3 * S)
    assert task is not None and task.instance_id == fast
    assert _bounds() == _read_in_python() == predict.Bounds(T0 + 61 * S, None, None)
    door.complete(task, {"ok": True}, now=T0 + 4 * S)
    assert _bounds() == _read_in_python() == predict.Bounds(T0 + 61 * S, None, None)
    # a claim that lapses: swept, its step is queued again, a new attempt with a clock of its own
    task, _ = door.claim_topic("review", "w1", timedelta(seconds=5), now=T0 + 5 * S)
    assert task is not None and task.instance_id == normal
    assert _bounds() == _read_in_python() == predict.Bounds(_expires(slow), None, None)
    door.sweep(now=T0 + 20 * S)
    assert _bounds() == _read_in_python() == predict.Bounds(_expires(normal), None, None)
    # a failed attempt with a retry left: queued again
    task, _ = door.claim_topic("review", "w1", LEASE, now=T0 + 30 * S)
    assert task is not None
    assert _bounds() == _read_in_python()
    door.fail(task, "no", now=T0 + 31 * S)
    assert _bounds() == _read_in_python() == predict.Bounds(min(_expires(normal), _expires(slow)), None, None)
    # cancelled: its steps leave the queue
    with transaction() as s:
        control.cancel(s, normal, T0 + 32 * S)
        control.cancel(s, slow, T0 + 32 * S)
    assert _bounds() == _read_in_python() and _bounds().empty


def test_the_outlook_reads_the_bounds_and_the_pace_in_one_statement_and_no_samples_without_a_queue(
        backend: Backend) -> None:
    _save("review_w")
    for n in range(30):  # served one per second, each run a different length
        _queue(1, T0 + n * S)
        _serve(T0 + n * S, run=S * ((n * 7) % 30) / 100)
    now = T0 + 40 * S
    samples: list[str] = []
    with _statements(samples, "recent"), transaction() as s:
        assert predict.outlook(s, "review", now) == (predict.Bounds(None, None, None), None)  # no queue, no pace
    [queued] = _queue(1, now)
    with transaction() as s:
        found, estimate = predict.outlook(s, "review", now)
        done = s.execute(select(TaskRow.started_at, TaskRow.finished_at).where(
            TaskRow.topic == "review", TaskRow.status == "done")).all()
    assert len(samples) == 1 and found == _bounds() == predict.Bounds(_expires(queued), None, None)
    runs = sorted((finished - started).total_seconds() for started, finished in done)
    oldest = min(finished for _, finished in done)
    assert estimate is not None and (estimate.samples, estimate.window_s) == (30, 300.0)
    assert estimate.rate == pytest.approx(29 / (now - oldest).total_seconds())
    assert estimate.p90_s == pytest.approx(runs[27], abs=0.005) and runs[27] != runs[26]  # floor(0.9 * 30)-th


def test_the_bounds_follow_predictions_made_taken_back_and_claimed(backend: Backend, monkeypatch: Any) -> None:
    _save("review_w")
    now = _history_at_one_per_second(T0, 60)
    backlog = _burst(80, now)
    now += S
    scan_sla(now)
    lights = _lights(backlog)
    predicted = [iid for iid in backlog if lights[iid] == ("yellow", "predicted")]
    assert predicted and predicted == backlog[-len(predicted):]
    found = _bounds()
    assert found == _read_in_python()
    assert found.first_predicted == now - S + (len(backlog) - len(predicted)) * S / 100
    assert found.latest_warn == now - S + (len(backlog) - 1) * S / 100 + 48 * S
    assert found.soonest == _expires(backlog[0])  # the head, still green
    # helpers join: the head is served fast, the tail's predictions are taken back (green, never predicted again)
    for n in range(70):
        _serve(now + n * S / 14, run=S / 100)
    scan_sla(now + 5 * S)
    assert _lights([backlog[-1]])[backlog[-1]] == ("green", "cleared")
    assert _bounds() == _read_in_python() and _bounds().empty  # cleared steps are in neither index
    # a predicted step claimed leaves the bounds
    more = _burst(60, now + 6 * S)
    with monkeypatch.context() as patch:
        fixed_pace(patch, 0.5, 1.0)
        scan_sla(now + 7 * S)
    assert _lights([more[-1]])[more[-1]] == ("yellow", "predicted")
    while _bounds().first_predicted is not None:
        assert _bounds() == _read_in_python()
        assert _serve(now + 8 * S) is not None
    assert _bounds() == _read_in_python()


def test_a_scan_reads_no_queue_while_its_bounds_show_no_light_can_move(backend: Backend) -> None:
    _save("review_w", "review_day")
    now = _history_at_one_per_second(T0, 60)
    # a topic that keeps up: 20 queued served at one a second, the soonest 60 s away; behind them 200 with an hour
    _queue(20, now)
    _queue(200, now + S / 2, "review_day")
    with _queue_reads() as reads:
        assert scan_sla(now + S).warnings == 0
    assert reads == []
    with transaction() as s:
        assert predict.changes(s, now + S, bounded=False) == []
    # a backlog: 100 more of a minute's SLA could be late: the queue is read, and its tail turns yellow
    _queue(100, now + 2 * S)
    with _queue_reads() as reads:
        assert scan_sla(now + 3 * S).warnings > 0
    assert len(reads) == 1


def test_predicted_steps_deep_enough_in_the_queue_are_not_read_again(backend: Backend, monkeypatch: Any) -> None:
    _save("review_w", "review_day")
    fixed_pace(monkeypatch, 0.1, 1.0)  # one step every 10 s: a step later than the 5th of a minute's SLA is late
    ahead = _queue(5, T0, "review_day")
    backlog = _burst(20, T0 + S)
    scan_sla(T0 + 2 * S)
    assert all(light == ("yellow", "predicted") for light in _lights(backlog).values())
    assert all(light == ("green", None) for light in _lights(ahead).values())
    # five steps ahead of the first predicted one, its warning 46 s away: on time again only before the 5th place
    with _queue_reads() as reads:
        assert scan_sla(T0 + 3 * S).warnings == 0
    assert reads == []
    with transaction() as s:
        assert predict.changes(s, T0 + 3 * S, bounded=False) == []
    # two of those taken: the first predicted one is 4th, on time again, and the queue is read to say so
    for _ in range(2):
        assert _serve(T0 + 3 * S) in ahead
    with _queue_reads() as reads:
        scan_sla(T0 + 4 * S)
    assert len(reads) == 1
    assert _lights([backlog[0]])[backlog[0]] == ("green", "cleared")


def test_the_bounds_move_the_same_lights_as_reading_the_queue_every_time(backend: Backend, monkeypatch: Any) -> None:
    """Random queues, paces and transitions: each scan's changes, bounded or not, are the same."""
    _save(*SLAS)
    pick = random.Random(23)
    now, held, moved = T0, [], set()
    for _ in range(40):
        action = pick.random()
        if action < 0.35:
            _queue(pick.randint(1, 15), now, pick.choice(list(SLAS)))
        elif action < 0.6:
            for _ in range(pick.randint(1, 6)):
                task, _ = door.claim_topic("review", "w1", timedelta(seconds=pick.choice([5, 300])), now=now)
                if task is not None:
                    held.append(task)
        elif action < 0.8 and held:
            task = held.pop(pick.randrange(len(held)))
            with suppress(TaskAlreadyFinished, InstanceFinished):  # swept after its lease, or its instance cancelled
                if pick.random() < 0.7:
                    door.complete(task, {"ok": True}, now=now)
                else:
                    door.fail(task, "no", now=now)
        elif action < 0.9:
            door.sweep(now=now)
        else:
            with transaction() as s:
                queued = s.scalars(select(TaskRow.instance_id).where(TaskRow.status == "pending")).all()
            if queued:
                with transaction() as s:
                    control.cancel(s, pick.choice(queued), now)
        fixed_pace(monkeypatch, pick.choice([0.05, 0.2, 1.0, 3.0]), pick.choice([0.0, 2.0, 30.0]))
        assert _bounds() == _read_in_python()
        with transaction() as s:
            bounded = {(c.task_id, c.light) for c in predict.changes(s, now)}
            every_time = {(c.task_id, c.light) for c in predict.changes(s, now, bounded=False)}
        assert bounded == every_time, now
        moved |= {light for _, light in every_time}
        scan_sla(now)
        now += pick.choice([S, 5 * S, 20 * S])
    assert moved == {"yellow", "green"}  # lights did move, both ways
