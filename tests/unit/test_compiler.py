import pytest
from celery.canvas import _chain

import oms
from oms import Workflow
from oms.celery.compiler import compile_chain

from ..conftest import EPA


def test_one_signature_per_step_routed_to_its_topic_with_time_limits() -> None:
    wf = Workflow(id="w", steps=[*EPA["steps"], {"id": "pay", "sla": "10m", "topic": "charge_fee"}])  # type: ignore[misc]
    compiled = compile_chain(oms.app, wf, "wf-1")
    assert isinstance(compiled, _chain)
    tasks = compiled.tasks
    assert [t.task for t in tasks] == ["act.collect_form", "act.validate_tax_id", "act.charge_fee",
                                       "act.assign_inspector", "act.charge_fee"]
    assert [t.options["queue"] for t in tasks] == ["collect_form", "validate_tax_id", "charge_fee",
                                                   "assign_inspector", "charge_fee"]
    assert tasks[0].options["soft_time_limit"] == 300
    assert 300 < tasks[0].options["time_limit"] <= 330
    assert tasks[3].options["soft_time_limit"] == 48 * 3600
    assert tasks[3].options["time_limit"] == pytest.approx(48 * 3600 * 1.1)
    assert all(t.immutable for t in tasks)
    assert tasks[2].kwargs == {"instance_id": "wf-1", "workflow": "w", "step": "charge_fee", "index": 2}


def test_compiles_from_any_step() -> None:
    wf = Workflow(**EPA)
    tail = compile_chain(oms.app, wf, "wf-1", from_step=2)
    assert [t.kwargs["index"] for t in tail.tasks] == [2, 3]
    last = compile_chain(oms.app, wf, "wf-1", from_step=3)
    assert not isinstance(last, _chain)  # the last step alone is its own signature
    assert last.kwargs["step"] == "assign_inspector" and last.options["queue"] == "assign_inspector"


def test_compiled_chain_is_json_data() -> None:
    import json

    compiled = compile_chain(oms.app, Workflow(**EPA), "wf-1")
    assert json.loads(json.dumps(compiled))["kwargs"]["tasks"][0]["task"] == "act.collect_form"


def test_the_documented_path_of_the_compiler_still_works_and_says_where_it_went() -> None:
    from oms.celery.compiler import compile_chain

    with pytest.warns(DeprecationWarning, match="oms.compiler moved to oms.celery.compiler"):
        from oms.compiler import compile_chain as moved
    assert moved is compile_chain
