"""Operating it for years: pruning beside running workers, a missing scanner said out loud, ``oms doctor``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from oms import Workflow, start_workflow
from oms.ops.retention import prune
from oms.store.db import transaction
from oms.store.tables import EventRow, InstanceRow, TaskRow

from ..conftest import Backend
from ..invariants import assert_consistent
from ..workers import ROOT, BeatProcess, WorkerProcess, stop_all, wait_finished

pytestmark = pytest.mark.integration

OMS = Path(sys.executable).with_name("oms")
FAST = {"OMS_WORKER_LEASE": "3", "OMS_HEARTBEAT_INTERVAL": "0.5", "OMS_SLA_SCAN_INTERVAL": "1",
        "OMS_RECONCILE_AFTER": "3"}
TWO_STEPS = {"id": "durable", "steps": [{"id": "first", "sla": "10m", "topic": "slow"},
                                        {"id": "second", "sla": "10m", "topic": "slow"}]}


def oms(backend: Backend, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OMS), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **backend.env, "PYTHONPATH": str(ROOT), **(env or {})})


def _rows(instance_ids: list[str]) -> int:
    with transaction() as s:
        return sum(s.scalar(select(func.count()).select_from(table).where(column.in_(instance_ids))) or 0
                   for table, column in ((InstanceRow, InstanceRow.id), (TaskRow, TaskRow.instance_id),
                                         (EventRow, EventRow.instance_id)))


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_prune_while_workers_run_keeps_every_row_of_running_instances(backend: Backend, tmp_path: Path) -> None:
    env = {**backend.env, **FAST}
    beat = BeatProcess(env, tmp_path)
    processes = [WorkerProcess(env, tmp_path, ["oms"], concurrency=1, name="upkeep"),
                 WorkerProcess(env, tmp_path, ["slow"], concurrency=4, name="w1")]
    try:
        Workflow(**TWO_STEPS).save()
        old = [start_workflow("durable", payload={"sleep": 0.01, "n": i}) for i in range(60)]
        wait_finished(old, timeout=120)
        cutoff = datetime.now(UTC)
        assert _rows(old) == 60 * (1 + 2 + 8)
        busy = [start_workflow("durable", payload={"sleep": 0.05, "n": i}) for i in range(150)]
        with transaction() as s:
            running = s.scalar(select(func.count()).select_from(InstanceRow)
                               .where(InstanceRow.id.in_(busy), InstanceRow.status == "running"))
        assert running and running > 50  # the prune below runs while most of them still move
        removed = prune(cutoff, batch=7).instances + prune(cutoff, batch=7).instances
        assert removed == 60 and _rows(old) == 0
        wait_finished(busy, timeout=180)
    finally:
        stop_all(processes)
        beat.stop()
    assert_consistent(busy)  # every task row and every event of the instances that ran beside the prune
    listed = oms(backend, tmp_path, "prune", "--finished-before", "0s", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert re.fullmatch(r"would remove 150 instance\(s\), 300 task\(s\), 1200 event\(s\) and 0 notice\(s\) "
                        r"finished before \S+Z \(dry run: nothing removed\)\n", listed.stdout), listed.stdout
    done = oms(backend, tmp_path, "prune", "--finished-before", "0s", "--batch", "40")
    assert done.stdout.startswith("removed 150 instance(s), 300 task(s), 1200 event(s) and 0 notice(s) finished before ")
    assert done.stdout.strip().endswith("in 4 batch(es)") and _rows(busy) == 0


def test_a_deployment_without_beat_is_told_so(backend: Backend, tmp_path: Path) -> None:
    """No scan for 3 intervals: workers warn (push and pull), `oms list`/`status` and `oms doctor` say so."""
    env = {**backend.env, **FAST}

    def fast(*args: str) -> subprocess.CompletedProcess[str]:  # the CLI shares the deployment's clocks
        return oms(backend, tmp_path, *args, env=FAST)

    Workflow(id="lab", steps=[{"id": "pushed", "sla": "1m", "topic": "slow"},
                              {"id": "pulled", "sla": "1s", "topic": "pulled"}]).save()
    instance_id = start_workflow("lab", payload={"sleep": 0.01})
    worker = WorkerProcess(env, tmp_path, ["slow"], name="push")
    polls = "from act import fetch_task\nfor _ in range(6):\n    fetch_task('nobody_serves_this', max_wait=1)\n"
    puller = subprocess.Popen([sys.executable, "-c", polls], cwd=ROOT, env={**os.environ, **env},
                              stderr=subprocess.PIPE, text=True)
    try:
        warning = re.compile(r"WARNING.*no SLA scan has run yet: is `celery -A oms beat` running")
        deadline = time.monotonic() + 20
        while not warning.search(worker.log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert warning.search(worker.log.read_text()), worker.log.read_text()[-2000:]
        _, pulled_log = puller.communicate(timeout=30)
        assert "no SLA scan has run yet: is `celery -A oms beat` running" in pulled_log, pulled_log
        for args in (["list"], ["status", instance_id], ["list", "--json"]):
            shown = fast(*args)
            assert shown.returncode == 0 and shown.stderr.startswith(
                "warning: no SLA scan has run yet: is `celery -A oms beat` running"), (args, shown.stderr)
        # the pulled step is overdue and no scanner saw it: both views say red anyway
        assert re.search(rf"{instance_id}\s.*running\s+red\s+pulled", fast("list").stdout)
        assert re.search(r"pulled\s+1\s+pending\s+red", fast("status", instance_id).stdout)
        doctor = fast("doctor", "--timeout", "1")
        assert doctor.returncode == 1
        assert re.search(r"FAIL\s+SLA scan\s+no SLA scan has run yet", doctor.stdout), doctor.stdout
        assert re.search(r"FAIL\s+reconciler", doctor.stdout), doctor.stdout

        beat = BeatProcess(env, tmp_path)
        upkeep = WorkerProcess(env, tmp_path, ["oms"], concurrency=1, name="upkeep")
        try:
            deadline = time.monotonic() + 20
            while fast("list").stderr and time.monotonic() < deadline:
                time.sleep(0.5)
            assert fast("list").stderr == ""
            doctor = fast("doctor", "--timeout", "2", "--json")
            checks = {c["name"]: c for c in json.loads(doctor.stdout)}
            assert checks["SLA scan"]["status"] == "ok" and checks["reconciler"]["status"] == "ok", checks
            assert checks["topic slow"]["status"] == "ok" and "push@" in checks["topic slow"]["detail"]
            assert checks["topic oms"]["status"] == "ok" and "upkeep@" in checks["topic oms"]["detail"]
            # nobody pulls `pulled`, nobody handles the escalation of its breach: their steps wait, longer than
            # OMS_RECONCILE_AFTER, with no consumer: that fails
            time.sleep(3.5)
            doctor = fast("doctor", "--timeout", "2", "--json")
            checks = {c["name"]: c for c in json.loads(doctor.stdout)}
            assert doctor.returncode == 1 and checks["topic pulled"]["status"] == "fail", checks
            assert "1 step(s) waiting" in checks["topic pulled"]["detail"]
            failed = [c["name"] for c in checks.values() if c["status"] == "fail"]
            assert failed == ["topic pulled", "topic sla_violation"], checks
        finally:
            upkeep.stop()
            beat.stop()
        # the scans stop: within three intervals the header is back, with the scan's age
        time.sleep(3.5)
        assert re.match(r"warning: no SLA scan for \d+ s: is `celery -A oms beat` running",
                        fast("list").stderr)
    finally:
        puller.kill()
        worker.stop()


def test_doctor_fails_on_an_unreachable_database_or_broker(sqlite_backend: Backend, tmp_path: Path) -> None:
    result = oms(sqlite_backend, tmp_path, "doctor", env={
        "OMS_DATABASE_URL": "postgresql+psycopg://postgres:pw@127.0.0.1:1/none"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"FAIL\s+database\s+cannot reach postgresql\+psycopg://postgres:\*\*\*@127.0.0.1:1/none",
                     result.stdout), result.stdout
    result = oms(sqlite_backend, tmp_path, "doctor", env={"OMS_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 1 and re.search(r"FAIL\s+broker\s+cannot reach redis://127.0.0.1:1/0", result.stdout)
