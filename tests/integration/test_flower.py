"""Flower shows the engine's steps: ``celery -A oms flower`` beside a worker with events, read over its HTTP API."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oms import Workflow, start_workflow

from ..conftest import EPA, Backend
from ..workers import ROOT, WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

STEPS = [step.id for step in Workflow(**EPA).steps]
#: Basic auth, from the environment as docker-compose.yml passes it (never on the command line).
AUTH = "operator:not-a-real-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, auth: str | None = AUTH) -> Any:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Flower:
    """``celery -A oms flower`` on a loopback port, its log in a file."""

    def __init__(self, backend: Backend, cwd: Path) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = cwd / "flower.log"
        self._out = self.log.open("w")
        command = [sys.executable, "-m", "celery", "-A", "oms", "flower", "--address=127.0.0.1",
                   f"--port={self.url.rsplit(':', 1)[1]}"]
        env = {**os.environ, **backend.env, "PYTHONPATH": str(ROOT), "FLOWER_BASIC_AUTH": AUTH}
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{self.url}/api/workers")
                return
            except (OSError, ValueError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"flower did not come up (pip install hms-oms[flower]):\n{self.log.read_text()}")
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        self._out.close()


def _shown(flower: Flower, worker: WorkerProcess, instance_id: str,
           enough: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Flower's tasks of ``instance_id`` by name, once ``enough`` says they are all there."""
    deadline = time.monotonic() + 30
    while True:
        tasks = _get(f"{flower.url}/api/tasks?limit=200").values()
        ours = {t["name"]: t for t in tasks if instance_id in (t.get("kwargs") or "")}
        if enough(ours):
            return ours
        if time.monotonic() > deadline:
            pytest.fail(f"flower shows {ours} after 30s; worker log:\n{worker.log.read_text()[-3000:]}")
        time.sleep(0.3)


def test_flower_lists_each_step_by_name_with_readable_arguments(postgres_backend: Backend, tmp_path: Path) -> None:
    """On PostgreSQL + Redis, where Flower is run in practice.

    (On the embedded filesystem broker Flower works too, but kombu's filesystem
    transport can hand a reader a message file before it is written; Flower's event
    receiver then fails with JSONDecodeError and, under load, misses the events.)
    """
    backend = postgres_backend
    Workflow(**EPA).save()
    # a shop's own task as a step (tests/shop_tasks.py), on a queue of its own
    Workflow(id="shop_add", steps=[{"id": "add", "task": "tests.shop_tasks.add", "topic": "adders", "sla": "1m"}]).save()
    worker = WorkerProcess(backend.env, tmp_path, [*STEPS, "adders"], modules="tests.handlers,tests.shop_tasks",
                           extra=["-E"])
    flower = Flower(backend, tmp_path)
    try:
        with pytest.raises(urllib.error.HTTPError, match="401"):
            _get(f"{flower.url}/api/tasks", auth=None)
        # events sent before Flower subscribes are lost: wait until it shows a first instance's steps
        warm_up = start_workflow("epa_waste_reg", payload={"form_id": "warm-up"})
        _shown(flower, worker, warm_up, lambda ours: bool(ours))
        instance_id = start_workflow("epa_waste_reg", payload={"form_id": "F8700-12-42"})
        assert wait_finished([instance_id]) == {instance_id: "done"}
        ours = _shown(flower, worker, instance_id,
                      lambda ours: len(ours) == len(STEPS) and all(t["state"] == "SUCCESS" for t in ours.values()))
        added = start_workflow("shop_add", payload={"x": 2, "y": 3})
        assert wait_finished([added]) == {added: "done"}
        task_step = _shown(flower, worker, added, lambda ours: ours.get("oms.task_step", {}).get("state") == "SUCCESS")
    finally:
        flower.stop()
        worker.stop()
    assert sorted(ours) == sorted(f"act.{step}" for step in STEPS)
    for index, step in enumerate(STEPS):
        kwargs = ours[f"act.{step}"]["kwargs"]
        for shown in (f"'instance_id': '{instance_id}'", "'workflow': 'epa_waste_reg'", f"'step': '{step}'",
                      f"'index': {index}"):
            assert shown in kwargs, kwargs
    # a task step shows as the engine's oms.task_step, naming the shop's task it ran
    kwargs = task_step["oms.task_step"]["kwargs"]
    for shown in (f"'instance_id': '{added}'", "'step': 'add'", "'task': 'tests.shop_tasks.add'"):
        assert shown in kwargs, kwargs
