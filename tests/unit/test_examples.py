"""The files in ``examples/`` are what the README says they are: every calendar and workflow loads and saves as
``oms calendar register`` and ``oms workflow register`` would, and the README shows the people example as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from oms import Calendar
from oms.cli.workflows import DATA_SUFFIXES, load_file
from oms.states import StepKind

from ..conftest import Backend
from ..workers import ROOT

EXAMPLES = ROOT / "examples"
CALENDARS = sorted((EXAMPLES / "calendars").glob("*.yaml"))
WORKFLOWS = sorted(p for p in (EXAMPLES / "workflows").iterdir() if p.suffix in (*DATA_SUFFIXES, ".py"))
PEOPLE = EXAMPLES / "workflows" / "epa_people.yaml"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_example_workflow_registers(backend: Backend, path: Path) -> None:
    for calendar in CALENDARS:  # the calendars they name, registered first as the README says
        Calendar.from_file(calendar).save()
    found = load_file(path)
    assert found and all(workflow.save() >= 1 for workflow in found)


def test_the_people_example_has_a_step_of_each_kind_and_is_the_readmes() -> None:
    [workflow] = load_file(PEOPLE)
    assert [step.kind for step in workflow.steps] == [StepKind.WAIT, StepKind.WORKER, StepKind.WORKER,
                                                      StepKind.HUMAN, StepKind.TIMER, StepKind.WORKER]
    body = PEOPLE.read_text().split("\nid: ", 1)[1]  # the definition, below the file's opening comments
    assert "id: " + body in (ROOT / "README.md").read_text()
