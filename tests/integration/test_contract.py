"""The OpenAPI document is the API: schemathesis, with every check, against a real ``oms api`` on each dialect.

Schemathesis (``schemathesis run``, the CLI a client team would use) reads
``/openapi.json`` and sends what it generates from it: valid requests (which must
not be refused), invalid ones (which must be), every response checked against the
document (status, content type, headers, body schema), and chains of calls through
the document's links (start → get → fetch → complete), at random. Zero failures are
allowed. Then that chain once more, walked by hand from the document alone to a
completed task, every answer checked against the document.

The server has a saved workflow and two instances; the token is an admin's. What is
given rather than generated, and what is not checked, is in :data:`CONFIG`, each with
its reason. A missing ``schemathesis`` fails the test (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import schemathesis

import oms
from oms.catalog import Workflow
from oms.store import tokens

from ..browser import ROOT, ApiProcess
from ..conftest import EPA, Backend

pytestmark = pytest.mark.integration

#: Cases per operation in the fuzzing phase (``OMS_TEST_CONTRACT_EXAMPLES``) and scenarios' budget in the
#: stateful phase (``OMS_TEST_CONTRACT_SCENARIOS``), and the seed (``OMS_TEST_CONTRACT_SEED``): a fixed one, so
#: that a failure here is one anybody can run again. The coverage phase sends every case the schema defines
#: whatever the counts. Fuzzing is where the time goes (at 40 cases, nine of a dialect's eleven minutes); the
#: stateful phase keeps 40 (its walks through the links are random; the walk to a completion is
#: :func:`test_the_documents_links_carry_a_worker_from_start_to_completion`).
EXAMPLES = int(os.environ.get("OMS_TEST_CONTRACT_EXAMPLES", "10"))
SCENARIOS = int(os.environ.get("OMS_TEST_CONTRACT_SCENARIOS", "40"))
SEED = int(os.environ.get("OMS_TEST_CONTRACT_SEED", "22"))
#: The schemathesis CLI of this interpreter's environment (the dev extra installs it).
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

#: schemathesis.toml: values given to the generator, and the checks left out where the API is right but the
#: rule cannot be JSON Schema (each operation's description says the rule in words).
CONFIG = """
# tests/contract_hooks.py: a valid fetch's max_wait made at most a second (a long poll waits that long), and a
# valid duration written as text made a short one (its bound, a year or 300 s, is said in words, not a pattern).
hooks = "tests.contract_hooks"

[phases.fuzzing.generation]
max-examples = {examples}

[phases.stateful.generation]
max-examples = {scenarios}

# Every check (what `--checks all` turns on, the response time limit at its 10 s), less the exclusions below.
[checks]
enabled = true
max_response_time = 10.0

# Links: the document's own (start -> get -> fetch -> complete...). Those schemathesis would guess from field
# names are left out: it would take an event's `task_id` (null for an instance's own events) for a task's id.
[phases.stateful.inference]
algorithms = []

# /readyz answers 503 NotReady (documented) when no SLA scan ran lately, and no beat runs here: that is right.
[[operations]]
include-operation-id = "readyz"
checks.not_a_server_error.enabled = false
# The saved workflow: a random id would be a 404 every time, and start -> get -> fetch -> complete needs one.
[[operations]]
include-operation-id = ["start_instance", "signal_by_key"]
parameters = {{ "workflow_id" = "epa_waste_reg" }}

# A cursor is one the API returned (opaque: any other is 422 InvalidArgument), so it is given.
[[operations]]
include-operation-id = "list_instances"
parameters = {{ "cursor" = "{cursor}" }}

# An admin token reads an inbox or a human step as a person, named by ?user= (required of an admin, not of a
# person's token: a rule by role, which the document says in words).
[[operations]]
include-operation-id = ["get_inbox", "get_task"]
parameters = {{ "user" = "alice" }}

# A fetch without max_wait waits its default, 10 s, when nothing is offered: the response time limit allows it.
[[operations]]
include-operation-id = ["fetch_task", "fetch_tasks"]
checks.max_response_time = 15.0

# Valid by the schema, refused by a rule between fields or against stored data, said in the description:
# - get_report: `until` must be after `since`;
# - post_channel: a webhook or an e-mail address (not both), a secret for a webhook only, the URL's and the
#   address's forms, and the names ladders keep for their own targets (`assignee`);
# - signal_instance, signal_by_key: the signals a workflow waits for are its definition's (422 UnknownSignal);
# - put_workflow, put_calendar: a definition's rules beyond its JSON Schema (step ids unique, `after` naming its
#   steps, durations, time zones, the body's id the path's), and YAML sent as text;
# - reassign_task: a user or groups, at least one (the document says at least one property; `anyOf` of required
#   fields, which would say it exactly, is what openapi-python-client cannot read).
[[operations]]
include-operation-id = ["get_report", "post_channel", "signal_instance", "signal_by_key", "put_workflow",
                        "put_calendar", "reassign_task"]
checks.positive_data_acceptance.enabled = false
"""


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ApiProcess, str, str]:
    """An ``oms api`` on the dialect, with EPA saved and two instances; its admin token and a page's cursor."""
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    secret, _ = tokens.create("admin", name="contract")
    Workflow(**EPA).save()
    for form in ("F1", "F2"):
        oms.start_workflow("epa_waste_reg", {"form_id": form})
    server = ApiProcess(backend.env, tmp_path)
    request.addfinalizer(server.stop)
    page = httpx.get(f"{server.url}/v1/instances?limit=1", headers={"Authorization": f"Bearer {secret}"})
    assert page.status_code == 200, page.text
    return server, secret, str(page.json()["next_cursor"])


def test_schemathesis_finds_nothing_the_document_does_not_say(served: tuple[ApiProcess, str, str],
                                                              tmp_path: Path) -> None:
    server, secret, cursor = served
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing: pip install -e '.[dev]'"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(cursor=cursor, examples=EXAMPLES, scenarios=SCENARIOS))
    run = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{server.url}/openapi.json",
         "-H", f"Authorization: Bearer {secret}",
         "--seed", str(SEED), "--request-timeout", "20", "--workers", "1", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)})
    summary = run.stdout[-6000:]
    (tmp_path / "schemathesis.out").write_text(run.stdout)
    assert run.returncode == 0, f"schemathesis failed (exit {run.returncode}):\n{run.stdout[-30000:]}\n{run.stderr}"
    assert " passed" in summary and "failures" not in summary.split("SUMMARY")[-1].lower(), summary
    log = server.log.read_text()
    assert "Traceback" not in log, log[-5000:]


#: The worker's loop through the document's links: each (link followed, the status its response must have).
LOOP = (("GetInstance", 200), ("FetchTask", 200), ("CompleteTask", 200))


def _value(expression: Any, body: Any) -> Any:
    """A link's value: ``$response.body#/a/0/b`` taken from ``body`` (a JSON pointer), any other as written."""
    if isinstance(expression, dict):
        return {key: _value(item, body) for key, item in expression.items()}
    if not (isinstance(expression, str) and expression.startswith("$response.body#")):
        return expression
    for part in expression.removeprefix("$response.body#").split("/")[1:]:
        body = body[int(part)] if isinstance(body, list) else body[part.replace("~1", "/").replace("~0", "~")]
    return body


def test_the_documents_links_carry_a_worker_from_start_to_completion(served: tuple[ApiProcess, str, str]) -> None:
    """start -> get -> fetch -> complete, each call made from the document alone (its path, its link's values),
    each answer checked against the document. Schemathesis's stateful phase walks these links at random, and
    whether a walk reaches the end varies with its version's choices; this walk always does."""
    server, secret, _ = served
    headers = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
    document = httpx.get(f"{server.url}/openapi.json").json()
    operations = {operation["operationId"]: (path, method, operation)
                  for path, item in document["paths"].items() for method, operation in item.items()}

    def call(operation_id: str, status: int, parameters: dict[str, Any], body: Any) -> tuple[dict[str, Any], Any]:
        path, method, operation = operations[operation_id]
        answer = httpx.request(method, server.url + path.format(**parameters), json=body, headers=headers,
                               timeout=20)
        assert answer.status_code == status, f"{method.upper()} {path}: {answer.status_code} {answer.text}"
        schema[path][method].validate_response(answer)
        return operation["responses"][str(status)].get("links", {}), answer.json()

    links, body = call("start_instance", 201, {"workflow_id": "epa_waste_reg"}, {"payload": {"form_id": "F3"}})
    for name, status in LOOP:
        assert name in links, f"no link {name} among {sorted(links)}"
        link = links[name]
        links, body = call(link["operationId"], status, _value(link.get("parameters", {}), body),
                           _value(link.get("requestBody", {}), body))
    assert body == {"status": "done", "repeat": False}, body
