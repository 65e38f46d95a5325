"""The predictive yellow light, with the clock passed in: a topic's pace against each queued step's deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from oms import Workflow, history, scan_sla
from oms.engine import door
from oms.engine.starts import start_instances
from oms.sla import predict
from oms.store.catalog import load_definition
from oms.store.db import transaction

from ..conftest import Backend
from .test_sla import _escalations

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
LEASE = timedelta(minutes=5)


def _queue(count: int, now: datetime, workflow: str = "review_w") -> list[str]:
    """``count`` instances of a one-step workflow (60 s SLA) on topic ``review``, started at ``now``."""
    with transaction() as s:
        definition, version = load_definition(s, workflow)
        return [d.instance_id for d in start_instances(s, definition, version, [{"n": n} for n in range(count)], now)]


def _serve(now: datetime, run: timedelta = S / 2) -> str | None:
    """One worker's round: claim the oldest queued step at ``now``, finish it ``run`` later."""
    task, _ = door.claim_topic("review", "w1", LEASE, now=now)
    if task is None:
        return None
    door.complete(task, {"ok": True}, now=now + run)
    return task.instance_id


def _lights(instance_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    from oms import get_instance

    found = {}
    for iid in instance_ids:
        [task] = get_instance(iid).tasks
        found[iid] = (task.light, task.light_reason)
    return found


def _burst(count: int, now: datetime) -> list[str]:
    """``count`` arrivals 10 ms apart from ``now``: the queue's order is theirs."""
    return [iid for n in range(count) for iid in _queue(1, now + n * S / 100)]


def _history_at_one_per_second(start: datetime, count: int) -> datetime:
    """``count`` steps served at 1 per second before the backlog: the topic's recent pace."""
    for n in range(count):
        _queue(1, start + n * S)
        _serve(start + n * S)
    return start + count * S


def fixed_pace(monkeypatch: Any, rate: float, p90_s: float) -> None:
    """Every topic's pace fixed (its bounds read as ever)."""
    monkeypatch.setattr(predict, "outlook", lambda session, topic, now: (
        predict.bounds(session, topic), predict.Pace(topic, rate, p90_s, 100, 300.0)))


def test_a_growing_backlog_turns_the_late_steps_yellow_long_before_the_fraction_rule(backend: Backend) -> None:
    Workflow(id="review_w", steps=[{"id": "review", "sla": "60s"}]).save()
    now = _history_at_one_per_second(T0, 60)
    backlog = _burst(100, now)
    now += S
    report = scan_sla(now)  # the first scan, at 1 s of the 60 s SLA (the fraction rule waits for 48 s)
    predicted = {iid for iid, (light, why) in _lights(backlog).items() if (light, why) == ("yellow", "predicted")}
    assert 35 <= len(predicted) <= 45, len(predicted)
    assert report.warnings == len(predicted)
    assert predicted == set(backlog[-len(predicted):])  # the last of the queue
    escalation = _escalations("sla_warning")[-1]
    assert escalation["reason"] == "predicted" and escalation["predicted_finish"] > escalation["expires_at"]
    assert escalation["estimate"]["samples"] == 60 and 0.9 <= escalation["estimate"]["rate_per_s"] <= 1.1
    # served at about one a second from now on: which really breach?
    breached = set()
    for second in range(1, 120):
        moment = now + second * S
        served = _serve(moment - S)
        if served and moment - S / 2 > now + 60 * S:
            breached.add(served)
        scan_sla(moment)
    hits = len(predicted & breached)
    precision, recall = hits / len(predicted), hits / len(breached)
    print(f"\npredicted yellow: {len(predicted)} of 100 queued, breached: {len(breached)}, "
          f"precision {precision:.2f}, recall {recall:.2f}")
    assert precision >= 0.9 and recall >= 0.9


def test_a_topic_that_keeps_up_shows_no_predicted_yellow(backend: Backend) -> None:
    Workflow(id="review_w", steps=[{"id": "review", "sla": "60s"}]).save()
    now = _history_at_one_per_second(T0, 60)
    backlog = _queue(20, now)
    assert scan_sla(now).warnings == 0
    assert all(light == "green" for light, _ in _lights(backlog).values())


def test_too_few_finished_steps_predict_nothing(backend: Backend) -> None:
    Workflow(id="review_w", steps=[{"id": "review", "sla": "60s"}]).save()
    now = _history_at_one_per_second(T0, 5)  # below OMS_PREDICT_MIN_SAMPLES
    _queue(200, now)
    assert scan_sla(now).warnings == 0


def test_a_prediction_is_taken_back_once_then_never_made_again(backend: Backend, monkeypatch: Any) -> None:
    Workflow(id="review_w", steps=[{"id": "review", "sla": "60s"}]).save()
    now = _history_at_one_per_second(T0, 60)
    backlog = _burst(80, now)
    now += S
    scan_sla(now)
    last = backlog[-1]
    assert _lights([last])[last] == ("yellow", "predicted")
    # helpers join: 70 served in the next 5 seconds, the pace jumps and the queue's tail is on time again
    for n in range(70):
        _serve(now + n * S / 14, run=S / 100)
    scan_sla(now + 5 * S)
    assert _lights([last])[last] == ("green", "cleared")
    kinds = [e.kind for e in history(last) if "sla" in e.kind]
    assert kinds == ["task.sla_warning", "task.sla_warning_cleared"]
    # the pace collapses: the step is not predicted again (no flapping), and the fraction rule still warns
    fixed_pace(monkeypatch, 0.01, 1.0)
    assert scan_sla(now + 6 * S).warnings == 0
    assert _lights([last])[last] == ("green", "cleared")
    scan_sla(now + 50 * S)
    assert _lights([last])[last] == ("yellow", "cleared")
