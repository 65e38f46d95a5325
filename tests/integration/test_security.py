"""JSON only on the wire, passwords kept out of every message, clear errors for unreachable services."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import oms
from oms import Workflow, start_workflow
from oms.exceptions import BrokerUnavailable, ConfigurationError
from oms.store.db import transaction
from oms.store.tables import InstanceRow, TaskRow

from ..conftest import EPA, Backend, _configure
from ..workers import ROOT, WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Pw"
OMS_COMMAND = str(Path(sys.executable).parent / "oms")


def test_a_pickled_message_is_refused_by_workers(backend: Backend, tmp_path: Path) -> None:
    Workflow(**EPA).save()
    worker = WorkerProcess(backend.env, tmp_path, ["collect_form"])
    try:
        instance_id = start_workflow("epa_waste_reg", payload={"form_id": "F-1"})
        wait_for = time.monotonic() + 10
        while get_status(instance_id, 0) != "done" and time.monotonic() < wait_for:
            time.sleep(0.05)
        # a second instance, offered by a hand-made pickled message only
        with transaction() as s:
            from oms.engine.starts import start_instance
            from oms.store.catalog import load_definition

            definition, version = load_definition(s, "epa_waste_reg")
            instance, _ = start_instance(s, definition, version, {"form_id": "F-2"}, oms.engine.starts.utcnow())
        oms.app.send_task("act.collect_form", kwargs={"instance_id": instance.id, "index": 0},
                          queue="collect_form", serializer="pickle")
        deadline = time.monotonic() + 10
        while "Refusing to deserialize" not in worker.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert "Refusing to deserialize untrusted content of type pickle" in worker.log.read_text()
    assert get_status(instance.id, 0) == "pending"  # the pickled message ran nothing


def get_status(instance_id: str, index: int) -> str | None:
    with transaction() as s:
        return s.scalar(select(TaskRow.status).where(TaskRow.instance_id == instance_id, TaskRow.step_index == index))


def test_passwords_never_appear_in_logs_errors_or_cli_output(postgres_url: str, tmp_path: Path) -> None:
    # trust authentication accepts any password, so the secret travels without breaking anything
    with_secret = postgres_url.replace("postgres@", f"postgres:{SECRET}@")
    assert SECRET in with_secret
    backend = _configure("secret", with_secret, "filesystem://", tmp_path)
    Workflow(**EPA).save()
    worker = WorkerProcess(backend.env, tmp_path, ["collect_form", "validate_tax_id", "charge_fee",
                                                   "assign_inspector"])
    try:
        instance_id = start_workflow("epa_waste_reg", payload={"form_id": "F-1"})
        wait_finished([instance_id])
    finally:
        worker.stop()
    env = {**os.environ, **backend.env, "PYTHONPATH": str(ROOT)}
    outputs = [
        subprocess.run([OMS_COMMAND, *args], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
        for args in (["status", instance_id], ["history", instance_id], ["start", "nope", "--payload", "{}"])
    ]
    bad_db = {**env, "OMS_DATABASE_URL": f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/none"}
    outputs.append(subprocess.run([OMS_COMMAND, "status", "wf-" + "0" * 32], env=bad_db,
                                  capture_output=True, text=True, timeout=60))
    assert outputs[-1].returncode != 0 and "cannot reach the database at postgresql" in outputs[-1].stderr
    assert "***" in outputs[-1].stderr and "Traceback" not in outputs[-1].stderr
    text = worker.log.read_text() + "".join(o.stdout + o.stderr for o in outputs)
    assert SECRET not in text


def test_unreachable_database_and_broker_give_one_clear_error(sqlite_backend: Backend, tmp_path: Path) -> None:
    oms.configure(database_url=f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/none")
    with pytest.raises(ConfigurationError) as caught:
        start_workflow("epa_waste_reg", payload={})
    assert "cannot reach the database at postgresql+psycopg://postgres:***@127.0.0.1:1/none" in str(caught.value)
    assert SECRET not in str(caught.value)
    # a database or driver the engine does not run on, or no URL at all: named, the password hidden
    for url, said in ((f"mysql://root:{SECRET}@db/oms", "'mysql' is not supported; the engine runs on SQLite"),
                      (f"postgresql+asyncpg://u:{SECRET}@db/oms", r"'postgresql\+asyncpg' is not supported"),
                      (f"not a url {SECRET}", "OMS_DATABASE_URL is not a database URL")):
        oms.configure(database_url=url)
        with pytest.raises(ConfigurationError, match=said) as refused:
            start_workflow("epa_waste_reg", payload={})
        assert SECRET not in str(refused.value)
    # postgres://, as Heroku writes it, is PostgreSQL
    oms.configure(database_url=f"postgres://postgres:{SECRET}@127.0.0.1:1/none")
    with pytest.raises(ConfigurationError, match=r"cannot reach the database at postgres://postgres:\*\*\*@"):
        start_workflow("epa_waste_reg", payload={})

    oms.configure(database_url=sqlite_backend.database_url, broker_url=f"redis://:{SECRET}@127.0.0.1:1/0")
    Workflow(**EPA).save()
    with pytest.raises(BrokerUnavailable) as broker:
        start_workflow("epa_waste_reg", payload={"form_id": "F-1"})
    assert "cannot reach the broker at redis://:**@127.0.0.1:1/0" in str(broker.value)
    assert SECRET not in str(broker.value)
    # the instance is recorded, its first step queued for the reconciler
    with transaction() as s:
        assert s.scalar(select(func.count()).select_from(InstanceRow)) == 1
        assert s.scalar(select(TaskRow.status).where(TaskRow.instance_id == broker.value.instance_id)) == "pending"
