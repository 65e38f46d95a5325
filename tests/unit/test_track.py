"""oms.track's canvas walk: one step per task, the canvas's shape as the graph, each step's SLA from its source."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import chain, chord, group

import oms
from oms.celery.tracked import parse_tracked_id, stored_result, tracked_id
from oms.exceptions import ConfigurationError, InvalidDefinition
from oms.track import shape
from tests.track_tasks import add, mul, xsum


def _graph(canvas: object, sla: str | None = None) -> list[tuple[str, list[str] | None, object]]:
    definition, _ = shape(canvas, "w", sla)
    assert definition.tracked
    return [(s.id, s.after, s.sla) for s in definition.steps]


def test_a_single_task_is_one_first_step() -> None:
    assert _graph(add.s(1, 2)) == [("add", [], None)]


def test_a_chain_is_a_sequence() -> None:
    assert _graph(chain(add.s(2, 2), mul.s(4))) == [("add", [], None), ("mul", ["add"], timedelta(minutes=2))]


def test_a_group_is_parallel_and_repeated_names_are_numbered() -> None:
    assert _graph(group(add.s(1, 1), add.s(2, 2), mul.s(1, 1))) == [
        ("add_1", [], None), ("add_2", [], None), ("mul", [], timedelta(minutes=2))]


def test_a_chord_is_its_header_then_its_body_after_all_of_it() -> None:
    graph = _graph(chord(group(add.s(i, i) for i in range(3)), xsum.s()))
    assert graph[-1] == ("xsum", ["add_1", "add_2", "add_3"], None)
    assert [after for _, after, _ in graph[:-1]] == [[], [], []]


def test_nested_canvases_keep_their_shape() -> None:
    canvas = chain(add.s(1, 1), group(mul.s(2), mul.s(3)), xsum.s(), chord([add.s(1, 1)], xsum.s()))
    assert [(i, a) for i, a, _ in _graph(canvas)] == [
        ("add_1", []), ("mul_1", ["add_1"]), ("mul_2", ["add_1"]), ("xsum_1", ["mul_1", "mul_2"]),
        ("add_2", ["xsum_1"]), ("xsum_2", ["add_2"])]


def test_the_sla_comes_from_set_else_the_task_else_none() -> None:
    definition, _ = shape(chain(add.s(1, 1).set(sla="30s"), mul.s(2).set(sla="1h"), xsum.s()), "w", "30m")
    assert [s.sla for s in definition.steps] == [timedelta(seconds=30), timedelta(hours=1), None]
    assert definition.sla == timedelta(minutes=30)
    assert [s.task for s in definition.steps] == ["tests.track_tasks.add", "tests.track_tasks.mul",
                                                 "tests.track_tasks.xsum"]


def test_a_bad_sla_names_the_step() -> None:
    with pytest.raises(InvalidDefinition, match=r"steps\[0\]\.sla"):
        shape(add.s(1, 1).set(sla="soon"), "w")


def test_only_tracked_definitions_may_leave_a_step_without_sla() -> None:
    from oms.model.definitions import Definition

    with pytest.raises(InvalidDefinition, match="only a tracked workflow"):
        Definition(id="w", steps=[{"id": "a"}])
    assert Definition(id="w", tracked=True, steps=[{"id": "a", "task": "x.a"}]).steps[0].sla is None


def test_tracked_ids_are_recognised_without_the_database() -> None:
    instance = "wf-" + "a" * 32
    assert parse_tracked_id(tracked_id(instance, 7)) == (instance, 7)
    assert parse_tracked_id("0d5f2a8e-1c1b-4c8e-9f0e-3b3c2b1a0f00") is None
    assert parse_tracked_id(None) is None


def test_results_are_stored_as_json_or_their_repr() -> None:
    assert stored_result(4) == {"value": 4}
    assert stored_result({"a": [1]}) == {"value": {"a": [1]}}
    assert stored_result(None) is None
    assert stored_result({1, 2}) == {"value": "{1, 2}"}


def test_a_chord_on_an_app_without_a_result_backend_is_refused_and_its_instance_cancelled(backend: object) -> None:
    assert str(oms.app.conf.result_backend or "disabled").startswith("disabled")  # the engine's own app, as shipped
    with pytest.raises(ConfigurationError, match=r"a chord needs one\); wf-\S+ is cancelled") as refused:
        oms.track(chord(group(add.s(i, i) for i in range(3)), xsum.s()), workflow="fanin", sla="5m")
    instance_id = str(refused.value).rsplit("; ", 1)[1].split()[0]
    info = oms.get_instance(instance_id)
    assert info.status == "cancelled"
    assert "Starting chords requires a result backend" in (info.error or "")


def test_a_step_without_an_sla_shows_no_deadline(backend: object) -> None:
    instance_id = oms.track(chain(add.s(1, 2), mul.s(3)), workflow="billing", sla="30m")
    first = oms.get_instance(instance_id).tasks[0]
    assert (first.step_id, first.warn_at, first.expires_at, first.sla_clock.left_s) == ("add", None, None, None)
    queued = next(e for e in oms.history(instance_id) if e.kind == "task.queued")
    assert "expires_at" not in queued.data  # not a year-9999 stand-in
