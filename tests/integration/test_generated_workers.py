"""The tax validator on clients generated from a real ``oms api``'s ``/openapi.json``, in Python and in Node, and in
curl and jq (``tax_validator.sh``).

Each test generates its client from the running API's document (as ``examples/workers/README.md`` says),
so a document that no longer generates, or no longer type-checks against the worker, fails it. The pull
step ``validate_tax_id`` is served by that worker alone (no Python tax validator runs); a real Celery
worker pushes the EPA example's other steps. The worker meets the README's three cases: a task completed
behind its back (its own completion: 409, dropped), a database outage under the API (503: the same completion
again after a backoff), and a form the IRS refuses (failed). A missing generator, Node or npm fails the
test: it never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy.engine import make_url

import oms
from oms import Workflow
from oms.reads.instances import TaskInfo
from oms.store import tokens

from ..browser import ApiProcess
from ..conftest import EPA, Backend
from ..cuttable import Cuttable
from ..workers import ROOT, WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

EXAMPLES = ROOT / "examples/workers"
#: The EPA example's push steps and the modules that serve them (the lab's `oms worker -I …`).
PUSH_STEPS = ["collect_form", "charge_fee", "assign_inspector"]
PUSH_MODULES = "examples.workers.epa_handlers,examples.workers.payment_bot"
WORKER_ID = "irs-bot-generated"
GOOD = 20
#: How long the API's database is out while the worker holds a task.
OUTAGE_S = 3.0


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a step of the README's recipe; fail the test with its output when it fails."""
    done = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _tool(name: str, needs: str = "the Node worker needs Node 20 and npm (Debian: apt-get install nodejs npm)") -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {needs}", pytrace=False)
    return found


def python_worker(api: ApiProcess, work: Path) -> tuple[list[str], dict[str, str]]:
    """``oms_client`` generated into ``work`` from the API's document, the worker type-checked against it; the
    worker's command and environment."""
    _run([sys.executable, "-m", "openapi_python_client", "generate", "--url", f"{api.url}/openapi.json",
          "--meta", "none", "--config", str(EXAMPLES / "python_generated/config.yaml"),
          "--output-path", str(work / "oms_client"), "--fail-on-warning"],
         cwd=work, env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})  # its ruff hooks
    worker = str(EXAMPLES / "python_generated/tax_validator.py")
    _run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", worker], cwd=work,
         env={"MYPYPATH": str(work)})
    # the generated package alone on the path: the worker uses no engine code
    return [sys.executable, worker], {"PYTHONPATH": str(work)}


def node_worker(api: ApiProcess, work: Path) -> tuple[list[str], dict[str, str]]:
    """The Node worker copied into ``work``, its types generated there and checked; its command and environment."""
    node, npm = _tool("node"), _tool("npm")
    source = EXAMPLES / "node"
    if not (source / "node_modules/.package-lock.json").exists():
        pytest.fail(f"{source}/node_modules is missing: run scripts/setup (npm ci there)", pytrace=False)
    for name in ("package.json", "tsconfig.json", "tax_validator.mjs"):
        shutil.copy(source / name, work / name)
    (work / "node_modules").symlink_to(source / "node_modules", target_is_directory=True)
    _run([npm, "run", "--silent", "generate"], cwd=work, env={"OMS_API_URL": api.url})
    _run([npm, "run", "--silent", "check"], cwd=work)
    return [node, str(work / "tax_validator.mjs")], {}


def shell_worker(api: ApiProcess, work: Path) -> tuple[list[str], dict[str, str]]:
    """``tax_validator.sh``, curl and jq: no client to generate, the same rules to follow."""
    for tool in ("curl", "jq"):
        _tool(tool, "the shell worker needs curl and jq (Debian: apt-get install curl jq)")
    return [str(EXAMPLES / "tax_validator.sh")], {}


GENERATORS = {"python": python_worker, "node": node_worker, "shell": shell_worker}


@pytest.fixture
def database(postgres_backend: Backend) -> Iterator[Cuttable]:
    """The API's way to PostgreSQL, which the test cuts for an outage that touches no one else's connections."""
    url = make_url(postgres_backend.database_url)
    proxy = Cuttable(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture
def api(postgres_backend: Backend, database: Cuttable, tmp_path: Path) -> Iterator[ApiProcess]:
    tokens.create("admin", name="ops")  # oms api refuses to start with no token
    proxied = make_url(postgres_backend.database_url).set(host="127.0.0.1", port=database.port)
    process = ApiProcess({**postgres_backend.env, "OMS_DATABASE_URL": proxied.render_as_string(hide_password=False),
                          "OMS_API_DB_RETRY_SECONDS": "0.2"}, tmp_path)  # an outage is a 503 at once
    yield process
    process.stop()


def _start(api: ApiProcess, admin: dict[str, str], payload: dict[str, Any]) -> str:
    response = httpx.post(f"{api.url}/v1/workflows/epa_waste_reg/instances", json={"payload": payload}, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["instance_id"])


def _tax_task(instance_id: str) -> TaskInfo | None:
    return next((t for t in oms.get_instance(instance_id).tasks if t.step_id == "validate_tax_id"), None)


def _wait(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {timeout}s")
        time.sleep(0.05)


def _claimed(instance_id: str, timeout: float = 30) -> TaskInfo:
    """The instance's ``validate_tax_id`` task once a worker holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = _tax_task(instance_id)
        if task is not None and task.status == "running":
            return task
        time.sleep(0.05)
    pytest.fail(f"nobody claimed validate_tax_id of {instance_id} within {timeout}s")


@pytest.mark.parametrize("language", GENERATORS)
def test_a_generated_worker_serves_the_tax_validation_of_twenty_registrations(
        language: str, postgres_backend: Backend, api: ApiProcess, database: Cuttable, tmp_path: Path) -> None:
    Workflow(**EPA).save()
    work = tmp_path / language
    work.mkdir()
    command, env = GENERATORS[language](api, work)
    admin = {"Authorization": f"Bearer {tokens.create('admin', name='portal')[0]}"}
    worker_token, _ = tokens.create("worker", name="irs-bot", topics=["validate_tax_id"])
    push = WorkerProcess(postgres_backend.env, tmp_path, PUSH_STEPS, modules=PUSH_MODULES)
    log = tmp_path / f"{language}-worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(command, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "OMS_API_URL": api.url, "OMS_TOKEN": worker_token,
                                       "WORKER_ID": WORKER_ID, "IRS_LATENCY": "0", **env})
    try:
        # one form the IRS takes 3 s over: the test completes it behind the worker's back, whose own answer is a 409
        slow = _start(api, admin, {"form_id": "F8700-12-SLOW", "irs_seconds": 3})
        taken = _claimed(slow)
        assert taken.worker_id == WORKER_ID
        by_hand = httpx.post(f"{api.url}/v1/tasks/{taken.id}/complete", headers=admin,
                             json={"worker_id": WORKER_ID, "result": {"checked_by": "clerk"}})
        assert by_hand.status_code == 200, by_hand.text
        # one form whose completion meets a database outage: 503s, then the same completion once it is over
        outage = _start(api, admin, {"form_id": "F8700-12-OUTAGE", "irs_seconds": 2})
        held = _claimed(outage)
        database.cut(OUTAGE_S)
        _wait(lambda: (_tax_task(outage) or held).status == "done", timeout=OUTAGE_S + 30)
        good = [_start(api, admin, {"form_id": f"F8700-12-{n}"}) for n in range(GOOD)]
        bad = _start(api, admin, {"form_id": "F8700-12-X"})
        statuses = wait_finished([slow, outage, *good, bad], timeout=90)
        assert worker.poll() is None, "the worker exited"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(10)
        push.stop()
    output = log.read_text()
    assert statuses == {**{i: "done" for i in [slow, outage, *good]}, bad: "failed"}, output
    assert "DatabaseUnavailable" in output and f"200 {held.id} " in output, output
    for instance_id in [outage, *good]:
        task = _tax_task(instance_id)
        assert task is not None and (task.status, task.worker_id) == ("done", WORKER_ID)
        assert f"200 {task.id} " in output
    assert (_tax_task(slow) or taken).result == {"checked_by": "clerk"}
    assert f"409 {taken.id} dropped" in output and "TaskAlreadyFinished" in output, output
    failed = _tax_task(bad)
    assert failed is not None and (failed.status, failed.worker_id) == ("failed", WORKER_ID)
    assert "IRS mismatch" in (oms.get_instance(bad).error or "")
