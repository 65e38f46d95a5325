"""Task steps: a shop's Celery task named by a step (argument binding, results, save-time checks, routing)."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery

import oms
from act.outcome import interpret
from act.taskstep import MissingArgument, arguments, merged, result_of
from oms import InvalidDefinition, Workflow
from oms.celery.compiler import TASK_STEP, compile_chain, step_signature
from oms.durations import utcnow
from oms.engine.door import Task
from oms.ops.reconcile import reconcile

from .. import shop_tasks
from ..conftest import Backend


def _task(payload: dict[str, Any], results: dict[str, Any] | None = None, **more: Any) -> Task:
    return Task(id="t", instance_id="wf-1", workflow_id="w", step_id="s", topic="s", attempt=1, payload=payload,
                results=results or {}, **more)


def _bind(fun: Any, task: Task, order: list[str] | None = None) -> tuple[list[Any], dict[str, Any]]:
    return arguments(inspect.signature(fun), task, order or [])


# -- the step's field ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["add", "shop tasks.add", "shop..add", "1shop.add", "oms.scan_sla", "act.collect",
                                  "shop." + "a" * 200])
def test_a_step_refuses_a_task_name_that_is_not_a_dotted_celery_name(name: str) -> None:
    with pytest.raises(InvalidDefinition, match="task"):
        Workflow(id="w", steps=[{"id": "s", "sla": "1m", "task": name}])


def test_a_task_step_keeps_its_task_in_the_stored_form() -> None:
    workflow = Workflow(id="w", steps=[{"id": "s", "sla": "1m", "task": "shop.tasks.add"}])
    assert workflow.spec()["steps"][0]["task"] == "shop.tasks.add"


# -- arguments ---------------------------------------------------------------------------------------------------------

def test_arguments_come_by_name_from_the_payload_and_results_win_over_it() -> None:
    task = _task({"x": 2, "y": 3, "value": 1}, {"add": {"value": 5}})
    assert _bind(shop_tasks.mul.run, task, ["add"]) == ([], {"value": 5, "y": 3})


def test_a_later_steps_result_wins_over_an_earlier_ones_whatever_the_order_results_are_stored_in() -> None:
    task = _task({}, {"b_second": {"k": "second"}, "a_first": {"k": "first"}})
    assert merged(task, ["b_first_in_list_order_is_not_it", "a_first", "b_second"])["k"] == "second"
    assert merged(task, ["b_second", "a_first"])["k"] == "first"


def test_payload_results_and_item_parameters_get_the_whole_objects_and_kwargs_every_other_key() -> None:
    def fun(payload: dict[str, Any], results: dict[str, Any], item: Any, x: int, **rest: Any) -> None: ...

    task = _task({"x": 1, "y": 2, "payload": "shadowed"}, {"a": {"z": 3}, "m": [1, 2]}, item="it", item_index=0)
    args, kwargs = _bind(fun, task, ["a", "m"])
    assert args == []
    assert kwargs == {"payload": task.payload, "results": task.results, "item": "it", "x": 1, "y": 2, "z": 3}


def test_a_parameter_with_a_default_is_left_to_it_and_a_required_one_missing_is_named() -> None:
    def fun(x: int, y: int = 7) -> None: ...

    assert _bind(fun, _task({"x": 1})) == ([], {"x": 1})
    with pytest.raises(MissingArgument) as raised:
        _bind(fun, _task({"y": 1}))
    assert raised.value.name == "x"


def test_positional_only_parameters_are_passed_by_position() -> None:
    def fun(a: int, /, b: int = 0, *more: int) -> None: ...

    assert _bind(fun, _task({"a": 1, "b": 2})) == ([1], {"b": 2})


def test_a_bound_tasks_self_is_not_an_argument() -> None:
    assert _bind(shop_tasks.bound.run, _task({"counter": "/tmp/c"})) == ([], {"counter": "/tmp/c"})


def test_an_autoretry_tasks_signature_is_its_functions() -> None:
    assert _bind(shop_tasks.flaky.run, _task({"counter": "/tmp/c"})) == ([], {"counter": "/tmp/c"})


# -- return values -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "result"), [
    ({"a": 1}, {"a": 1}),
    ({"pause": "not a pause"}, {"pause": "not a pause"}),
    (5, {"value": 5}),
    ("fail", {"value": "fail"}),
    ([1, "x"], {"value": [1, "x"]}),
    (None, None),
])
def test_a_return_value_becomes_the_steps_result(value: Any, result: Any) -> None:
    outcome = interpret(result_of(value))
    assert outcome.ok and outcome.pause is None and outcome.result == result


def test_a_return_value_that_is_not_json_fails_the_attempt() -> None:
    outcome = result_of({1, 2})
    assert not outcome.ok and "cannot be stored" in outcome.reason


# -- save ---------------------------------------------------------------------------------------------------------------

def test_save_refuses_a_task_its_importable_module_does_not_register(backend: Backend) -> None:
    workflow = Workflow(id="w", steps=[{"id": "s", "sla": "1m", "task": "tests.shop_tasks.nope"}])
    with pytest.raises(InvalidDefinition, match=r"step 's' names task 'tests.shop_tasks.nope'"):
        workflow.save()


def test_save_accepts_a_task_whose_module_it_cannot_import(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "s", "sla": "1m", "task": "elsewhere.tasks.add"}]).save()
    assert Workflow.load("w").steps[0].task == "elsewhere.tasks.add"


def test_a_step_without_retries_takes_them_from_the_tasks_autoretry_options(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "a", "sla": "1m", "task": "tests.shop_tasks.flaky"},
                            {"id": "b", "sla": "1m", "task": "tests.shop_tasks.backing_off"}]).save()
    a, b = Workflow.load("w").steps
    assert (a.retries, a.retry_backoff, a.retry_backoff_max) == (2, False, timedelta(seconds=600))
    assert (b.retries, b.retry_backoff, b.retry_backoff_max) == (3, timedelta(seconds=2), timedelta(seconds=30))


def test_a_step_setting_any_retry_field_keeps_its_own(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "a", "sla": "1m", "task": "tests.shop_tasks.flaky", "retry_backoff": "5s"},
                            {"id": "b", "sla": "1m", "task": "tests.shop_tasks.add"}]).save()
    a, b = Workflow.load("w").steps
    assert (a.retries, a.retry_backoff) == (0, timedelta(seconds=5))
    assert (b.retries, b.retry_backoff) == (0, False)  # no autoretry_for: nothing to take


def test_save_refuses_a_task_that_retries_for_ever_unless_the_step_sets_retries(backend: Backend) -> None:
    steps: list[dict[str, Any]] = [{"id": "s", "sla": "1m", "task": "tests.shop_tasks.forever"}]
    with pytest.raises(InvalidDefinition, match=r"step 's' runs task 'tests.shop_tasks.forever'.*explicit 'retries'"):
        Workflow(id="w", steps=steps).save()
    Workflow(id="w", steps=[{**steps[0], "retries": 4}]).save()
    assert Workflow.load("w").steps[0].retries == 4


# -- messages ---------------------------------------------------------------------------------------------------------

def test_a_task_step_is_sent_as_oms_task_step_to_the_queue_the_app_routes_its_task_to() -> None:
    shop = Celery("shop", set_as_current=False)
    shop.conf.task_routes = {"shop.tasks.*": {"queue": "shopq"}}
    shop.conf.task_default_queue = "shopdefault"
    workflow = Workflow(id="w", steps=[{"id": "a", "sla": "1m", "task": "shop.tasks.add"},
                                       {"id": "b", "sla": "1m", "task": "other.tasks.mul"},
                                       {"id": "c", "sla": "1m", "task": "shop.tasks.add", "topic": "mine"}])
    signatures = [step_signature(shop, workflow, "wf-1", index) for index in range(3)]
    assert [s.task for s in signatures] == [TASK_STEP] * 3
    assert [s.options["queue"] for s in signatures] == ["shopq", "shopdefault", "mine"]
    kwargs = {"instance_id": "wf-1", "workflow": "w", "step": "a", "index": 0, "task": "shop.tasks.add"}
    assert signatures[0].kwargs == kwargs
    assert signatures[0].options["kwargsrepr"] == repr(kwargs)
    assert signatures[0].options["soft_time_limit"] == 60


def test_on_the_engines_own_app_a_task_step_goes_to_its_default_queue() -> None:
    workflow = Workflow(id="w", steps=[{"id": "a", "sla": "1m", "task": "shop.tasks.add"},
                                       {"id": "b", "sla": "1m"}])
    first, second = compile_chain(oms.app, workflow, "wf-1").tasks
    assert (first.task, first.options["queue"]) == (TASK_STEP, oms.app.conf.task_default_queue)
    assert (second.task, second.options["queue"]) == ("act.b", "b")


def test_the_reconciler_looks_for_a_task_steps_message_on_the_queue_its_task_is_routed_to(backend: Backend) -> None:
    Workflow(id="w", steps=[{"id": "s", "sla": "1m", "task": "elsewhere.tasks.add"}]).save()
    oms.start_workflow("w", payload={})
    # its message waits on "oms", not on a queue named for the step: nothing is lost, nothing re-published
    assert reconcile(utcnow() + timedelta(hours=1)) == 0
