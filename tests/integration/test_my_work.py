"""A person's "My work" page in real browsers: two inspectors, each signed in to her own Chromium session, against a
real ``oms api`` on PostgreSQL.

Alice and Bob both see the human step in their inboxes, its light and a countdown that ticks. Alice claims it and
Bob's open page shows it taken without a reload. Alice submits the step's form wrong: the API's refusals appear next
to their fields and the step stays hers. She corrects it and completes it: the instance moves on to its next step.
An admin's board then finds an instance by its business key, and shows who holds a human step and when a timer
ends. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

import oms
from oms import Workflow, get_instance, start_workflow

from ..browser import ApiProcess, chromium, oms_command
from ..conftest import Backend
from .test_page import screenshot, sign_in, token, wait_for

pytestmark = pytest.mark.integration

FORM = {
    "type": "object",
    "required": ["inspector", "visit_on", "score", "passed", "outcome"],
    "properties": {  # in an order neither alphabetical nor jsonb's (shorter keys first): the form keeps it
        "notes": {"type": "string"},
        "inspector": {"type": "string", "title": "Inspector's name", "minLength": 1},
        "visit_on": {"type": "string", "format": "date"},
        "score": {"type": "number", "minimum": 0, "maximum": 10},
        "passed": {"type": "boolean"},
        "outcome": {"type": "string", "enum": ["approve", "reject", "revisit"]},
    },
}
WORKFLOW = {
    "id": "my_work_inspection",
    "steps": [
        {"id": "inspect", "assign": {"groups": ["inspectors"]}, "sla": "1h", "form": FORM},
        {"id": "cooling_off", "sleep": "1h"},  # the instance waits there (no SLA scan runs here)
        {"id": "file_report", "sla": "1h"},
    ],
}


@pytest.fixture
def people(postgres_backend: Backend) -> dict[str, str]:
    """The tokens of an admin (made before the API starts: it refuses to start with none), of two inspectors,
    alice and bob, and of their supervisor dave, each from ``oms user create``, which prints it once."""
    made = {"admin": token(postgres_backend, "admin", "my-work-admin")}
    for name in ("alice", "bob"):
        made[name] = oms_command(postgres_backend.env, "user", "create", name, "--groups", "inspectors").strip()
    made["dave"] = oms_command(postgres_backend.env, "user", "create", "dave", "--groups", "inspectors",
                               "--role", "supervisor").strip()
    return made


@pytest.fixture
def api(postgres_backend: Backend, people: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(postgres_backend.env, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def sessions(api: ApiProcess) -> Iterator[tuple[WebDriver, WebDriver]]:
    """Two browsers, no cookie shared: one for alice, one for bob."""
    first = chromium()
    try:
        second = chromium()
    except BaseException:
        first.quit()
        raise
    try:
        for driver in (first, second):
            driver.get(api.url + "/")
        yield first, second
    finally:
        first.quit()
        second.quit()


def _countdowns(driver: WebDriver, task_id: str) -> str:
    return str(driver.execute_script(
        "const n = document.querySelector(`#inbox li[data-task='${arguments[0]}'] .countdown`);"
        "return n ? n.textContent : '';", task_id))


def _field_error(driver: WebDriver, name: str, text: str = "") -> str:
    """The message next to field ``name`` (waiting until it holds ``text``, when given)."""
    css = f"#task-form .field[data-field='{name}'] .field-error"
    if text:
        return wait_for(driver, css, text)
    return str(driver.execute_script("return document.querySelector(arguments[0]).textContent;", css))


def test_two_inspectors_claim_and_complete_a_step_from_their_pages(
    postgres_backend: Backend, api: ApiProcess, people: dict[str, str], sessions: tuple[WebDriver, WebDriver]
) -> None:
    alice, bob = sessions
    Workflow.model_validate(WORKFLOW).save()
    instance_id = start_workflow(WORKFLOW["id"], payload={"facility": "Acme Plating", "address": "12 Mill Road"},
                                 business_key="F8700-12-42")
    other_id = start_workflow(WORKFLOW["id"], payload={"facility": "Other"}, business_key="F8700-99-01")
    [task_id] = [t.id for t in get_instance(instance_id).tasks if t.step_id == "inspect"]

    # both see it, with its form number, its light in words and a countdown that ticks without a reload
    for driver, name in ((alice, "alice"), (bob, "bob")):
        sign_in(driver, people[name])
        assert "(person)" in wait_for(driver, ".who")
        shown = wait_for(driver, f"#inbox li[data-task='{task_id}']", "F8700-12-42")
        assert "queued" in shown and "green" in shown and "left" in shown
        assert driver.find_elements(By.CSS_SELECTOR, f"#inbox li[data-task='{task_id}'] button.claim")
        assert not driver.find_elements(By.ID, "board"), "a person gets My work, not the operators' board"
        driver.execute_script("window.omsSamePage = true;")
    before = _countdowns(bob, task_id)
    WebDriverWait(bob, 5, poll_frequency=0.2).until(lambda d: _countdowns(d, task_id) not in ("", before))
    screenshot(bob, "my-work-inbox.png")

    # alice claims it with the button she found before the inbox was read again: an unchanged row is not redrawn,
    # so a button is never swapped from under the pointer; bob's page says it is taken, without a reload
    claim = alice.find_element(By.CSS_SELECTOR, f"#inbox li[data-task='{task_id}'] button.claim")
    read = alice.find_element(By.ID, "status-line").text
    WebDriverWait(alice, 10, poll_frequency=0.2).until(lambda d: d.find_element(By.ID, "status-line").text != read)
    claim.click()
    wait_for(alice, "#task-head", "F8700-12-42")
    wait_for(alice, "#task-holder", "yours")
    assert "taken by alice" in wait_for(bob, f"#inbox li[data-task='{task_id}']", "taken by alice")
    assert not bob.find_elements(By.CSS_SELECTOR, f"#inbox li[data-task='{task_id}'] button.claim")
    assert bob.execute_script("return window.omsSamePage === true;"), "bob's page was reloaded"
    screenshot(bob, "my-work-taken.png")

    # her form: each type its control, required marked; the payload read-only beside it
    controls = {name: alice.find_element(By.CSS_SELECTOR, f"#task-form .field[data-field='{name}'] :is(input, select)")
                for name in FORM["properties"]}
    fields = alice.find_elements(By.CSS_SELECTOR, "#task-form .field[data-field]")
    assert [f.get_attribute("data-field") for f in fields] == list(FORM["properties"])
    assert controls["inspector"].get_attribute("type") == "text"
    assert controls["visit_on"].get_attribute("type") == "date"
    assert controls["score"].get_attribute("type") == "number"
    assert controls["passed"].get_attribute("type") == "checkbox"
    assert controls["outcome"].tag_name == "select"
    assert [o.text for o in Select(controls["outcome"]).options][1:] == ["approve", "reject", "revisit"]
    assert len(alice.find_elements(By.CSS_SELECTOR, "#task-form .required")) == len(FORM["required"])
    assert "Acme Plating" in wait_for(alice, "#task-payload", "12 Mill Road")

    # wrong: no inspector, a score above 10: each refusal next to its field, and the step stays hers
    alice.execute_script("arguments[0].value = '2026-12-07';", controls["visit_on"])
    controls["score"].send_keys("42")
    Select(controls["outcome"]).select_by_visible_text("approve")
    alice.find_element(By.ID, "complete-button").click()
    assert "'inspector' is a required property" in _field_error(alice, "inspector", "required")
    assert "42 is greater than the maximum of 10" in _field_error(alice, "score", "maximum")
    assert _field_error(alice, "visit_on") == ""
    assert "Not completed" in wait_for(alice, "#task-message", "Not completed")
    screenshot(alice, "my-work-form-errors.png")
    time.sleep(2.5)  # a poll later, still hers, her typing kept
    assert get_instance(instance_id).steps[0].held_by == "alice"
    assert controls["score"].get_attribute("value") == "42"

    # right: completed, and the instance moves on
    controls["inspector"].send_keys("Alice Ng")
    controls["score"].clear()
    controls["score"].send_keys("7.5")
    controls["passed"].click()
    alice.find_element(By.ID, "complete-button").click()
    wait_for(alice, "#work-message", "Completed")
    WebDriverWait(alice, 20, poll_frequency=0.2).until(
        lambda _: get_instance(instance_id).current_step == "cooling_off")
    instance = get_instance(instance_id)
    assert instance.steps[0].status == "done"
    assert instance.results["inspect"] == {"inspector": "Alice Ng", "visit_on": "2026-12-07", "score": 7.5,
                                           "passed": True, "outcome": "approve"}
    wait_for(bob, "#inbox", "F8700-99-01")
    WebDriverWait(bob, 10, poll_frequency=0.2).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"#inbox li[data-task='{task_id}']"))
    assert alice.execute_script("return window.omsSamePage === true;"), "alice's page was reloaded"
    screenshot(alice, "my-work-completed.png")

    # an admin's board: search by business key; the instance shows its key and who holds its human step
    oms.claim(next(t.id for t in get_instance(other_id).tasks if t.step_id == "inspect"), "bob")
    alice.delete_all_cookies()
    alice.get(api.url + "/")
    sign_in(alice, people["admin"])
    wait_for(alice, f"#instances tr[data-instance='{instance_id}']")
    box = alice.find_element(By.ID, "f-business_key")
    box.send_keys("F8700-99-01", Keys.ENTER)
    rows = "return Array.from(document.querySelectorAll('#instances tbody tr[data-instance]'), r => r.dataset.instance);"
    WebDriverWait(alice, 10, poll_frequency=0.2).until(lambda d: d.execute_script(rows) == [other_id])
    assert "F8700-99-01" in wait_for(alice, f"#instances tr[data-instance='{other_id}']")
    alice.find_element(By.LINK_TEXT, other_id).click()
    assert wait_for(alice, "#instance-key") == "F8700-99-01"
    assert "held by bob" in wait_for(alice, "#timeline [data-step='inspect'] .kind", "held by bob")
    screenshot(alice, "my-work-board-key.png")
    alice.get(f"{api.url}/#/instances/{instance_id}")
    [timer] = [s for s in get_instance(instance_id).steps if s.id == "cooling_off"]
    assert timer.wake_at is not None
    ends = wait_for(alice, "#timeline [data-step='cooling_off'] .kind", "ends")
    assert f"sleep 1h · ends {timer.wake_at:%Y-%m-%d %H:%M:%S} UTC" == ends

    # dave, their supervisor, gives bob's step to alice: bob's claim goes back and the step leaves his page
    other_task = next(t.id for t in get_instance(other_id).tasks if t.step_id == "inspect")
    alice.delete_all_cookies()
    alice.get(api.url + "/")
    sign_in(alice, people["dave"])
    assert "(supervisor)" in wait_for(alice, ".who")
    wait_for(alice, f"#inbox li[data-task='{other_task}']", "taken by bob")
    alice.find_element(By.CSS_SELECTOR, f"#inbox li[data-task='{other_task}'] a.view").click()  # by clicking
    wait_for(alice, "#task-reassign", "Reassign")
    alice.find_element(By.ID, "reassign-button").click()
    assert "name a person or a group" in wait_for(alice, "#task-message", "Not reassigned")
    alice.find_element(By.ID, "reassign-user").send_keys("alice", Keys.ENTER)
    assert "held by alice" in wait_for(alice, "#work-message", "Reassigned")
    assert get_instance(other_id).steps[0].held_by == "alice"
    WebDriverWait(bob, 10, poll_frequency=0.2).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"#inbox li[data-task='{other_task}']"))
    assert bob.execute_script("return window.omsSamePage === true;"), "bob's page was reloaded"
