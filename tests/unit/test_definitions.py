import json
from datetime import timedelta
from pathlib import Path

import pytest

from oms import InvalidDefinition, Workflow
from oms.exceptions import UnknownWorkflow

from ..conftest import EPA, Backend


def test_the_seed_definition_validates_with_defaults() -> None:
    wf = Workflow(**EPA)
    assert [s.id for s in wf.steps] == ["collect_form", "validate_tax_id", "charge_fee", "assign_inspector"]
    assert wf.steps[3].sla == timedelta(hours=48)
    assert wf.steps[0].topic == "collect_form"
    assert wf.steps[0].retries == 0


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([{"id": "a", "sla": "1m"}, {"id": "a", "sla": "2m"}], "duplicate step id 'a'"),
        ([{"id": "a", "sla": "soon"}], r"steps\[0\].sla: not a duration: 'soon'"),
        ([{"id": "a", "sla": "0s"}], r"steps\[0\].sla: duration must be positive"),
        ([{"id": "a", "sla": "-5m"}], r"steps\[0\].sla"),
        ([{"id": "bad step!", "sla": "1m"}], "step id 'bad step!' cannot be a queue name"),
        ([{"id": "a", "sla": "1m", "topic": "x/y"}], "topic 'x/y' cannot be a queue name"),
        ([{"id": "a", "sla": "1m", "retries": -1}], r"steps\[0\].retries"),
        ([{"id": "a", "sla": "1m", "retires": 2}], r"steps\[0\].retires: unknown key \(misspelt\?\)"),
        ([{"id": "a"}], r"steps\[0\].sla: Field required"),
    ],
)
def test_invalid_definitions_name_the_culprit(steps: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InvalidDefinition, match=message) as caught:
        Workflow(id="w", steps=steps)
    assert "invalid workflow 'w'" in str(caught.value)


def test_workflow_id_must_be_a_queue_name() -> None:
    with pytest.raises(InvalidDefinition, match="workflow id 'a b'"):
        Workflow(id="a b", steps=[{"id": "s", "sla": "1m"}])


def test_retry_backoff_doubles_up_to_the_cap() -> None:
    wf = Workflow(id="w", steps=[{"id": "s", "sla": "1m", "retries": 5, "retry_backoff": "2s",
                                  "retry_backoff_max": "5s"}])
    assert [wf.steps[0].retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 5, 5]
    assert Workflow(id="w", steps=[{"id": "s", "sla": "1m"}]).steps[0].retry_delay(3) == timedelta(0)


def test_loads_yaml_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "epa.json").write_text(json.dumps(EPA))
    (tmp_path / "epa.yaml").write_text(
        "id: epa_waste_reg\nsteps:\n"
        + "".join(f"  - id: {s['id']}\n    sla: {s['sla']}\n" for s in EPA["steps"])  # type: ignore[index]
    )
    assert Workflow.from_file(tmp_path / "epa.json") == Workflow.from_file(tmp_path / "epa.yaml") == Workflow(**EPA)


def test_bad_files_get_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("id: [unclosed")
    with pytest.raises(InvalidDefinition, match="broken.yaml is not valid yaml"):
        Workflow.from_file(tmp_path / "broken.yaml")
    with pytest.raises(InvalidDefinition, match="cannot read"):
        Workflow.from_file(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InvalidDefinition, match="must hold a mapping"):
        Workflow.from_file(tmp_path / "list.json")


def test_save_versions_only_changes(backend: Backend) -> None:
    assert Workflow(**EPA).save() == 1
    assert Workflow(**EPA).save() == 1
    changed = {**EPA, "steps": [*EPA["steps"], {"id": "notify", "sla": "1h"}]}  # type: ignore[misc]
    assert Workflow(**changed).save() == 2
    assert Workflow(**EPA).save() == 3  # going back is a change too
    assert Workflow.load("epa_waste_reg", version=2) == Workflow(**changed)
    assert Workflow.load("epa_waste_reg") == Workflow(**EPA)


def test_unknown_workflow_is_named(backend: Backend) -> None:
    with pytest.raises(UnknownWorkflow, match="unknown workflow 'nope'"):
        Workflow.load("nope")
