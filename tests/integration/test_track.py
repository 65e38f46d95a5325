"""oms.track on real ``celery -A oms worker`` processes: plain Celery canvases, lit and escalated, on PostgreSQL + Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from celery import Celery, chain, chord, group
from celery.result import AsyncResult
from sqlalchemy import func, select

import oms
from oms.store.db import transaction
from oms.store.tables import EventRow, InstanceRow, TaskRow
from tests import track_celeryconfig
from tests.conftest import Backend
from tests.track_tasks import add, boom, lonely, mul, nap, slow_to_report, xsum
from tests.workers import WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

ENV = {"CELERY_CONFIG_MODULE": "tests.track_celeryconfig", "OMS_WORKER_LEASE": "3", "OMS_HEARTBEAT_INTERVAL": "1"}


#: A broker of these tests' own: db 3 is flushed by every other test of the shared Redis.
BROKER = "redis://127.0.0.1:6379/9"


@pytest.fixture
def shop(postgres_backend: Backend, tmp_path: Path) -> Iterator[Backend]:
    """The test process's app with the shop's Redis result backend (db 8) and its own broker (db 9), emptied."""
    for url in (track_celeryconfig.RESULT_BACKEND, BROKER):
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    app = oms.app
    saved = app.conf.result_backend, app.conf.task_ignore_result
    app.conf.result_backend, app.conf.task_ignore_result = track_celeryconfig.RESULT_BACKEND, False
    _drop_backend(app)
    oms.configure(database_url=postgres_backend.database_url, broker_url=BROKER, home=postgres_backend.home,
                  worker_lease=3.0, heartbeat_interval=1.0)
    yield replace(postgres_backend, broker_url=BROKER)
    app.conf.result_backend, app.conf.task_ignore_result = saved
    _drop_backend(app)


def _drop_backend(app: Celery) -> None:
    """Forget the app's cached result backend, closing its Redis connections (left to the collector, they warn)."""
    backend = app._local.__dict__.pop("backend", None)
    client = getattr(backend, "client", None)
    if client is not None:
        client.connection_pool.disconnect()


def _worker(backend: Backend, tmp_path: Path, name: str = "shop", concurrency: int = 2) -> WorkerProcess:
    return WorkerProcess({**backend.env, **ENV}, tmp_path, ["oms"], modules="tests.track_tasks", name=name,
                         concurrency=concurrency)


def _steps(instance_id: str) -> dict[str, str]:
    return {s.id: s.status for s in oms.get_instance(instance_id).steps}


def test_a_tracked_chain_and_chord_finish_done_with_the_same_results(shop: Backend, tmp_path: Path) -> None:
    worker = _worker(shop, tmp_path)
    try:
        assert chain(add.s(2, 2), mul.s(4)).apply_async().get(timeout=30) == 16
        untracked = chord(group(add.s(i, i) for i in range(10)), xsum.s()).apply_async().get(timeout=30)
        billing = oms.track(chain(add.s(2, 2), mul.s(4)), workflow="nightly_billing", sla="30m")
        fanin = oms.track(chord(group(add.s(i, i) for i in range(10)), xsum.s()), workflow="fanin", sla="5m")
        assert wait_finished([billing, fanin], timeout=60) == {billing: "done", fanin: "done"}
        assert AsyncResult(f"{billing}.1", app=oms.app).get(timeout=10) == 16
        assert AsyncResult(f"{fanin}.10", app=oms.app).get(timeout=10) == untracked == 90
        assert oms.get_instance(billing).results == {"add": {"value": 4}, "mul": {"value": 16}}
        assert set(_steps(fanin).values()) == {"done"} and len(_steps(fanin)) == 11
        kinds = [e.kind for e in oms.history(billing)]
        assert kinds.count("task.started") == 2 and kinds.count("task.done") == 2 and kinds[-1] == "workflow.done"
    finally:
        worker.stop()


def test_a_failing_member_fails_the_instance(shop: Backend, tmp_path: Path) -> None:
    worker = _worker(shop, tmp_path)
    try:
        instance = oms.track(chord(group(add.s(1, 1), boom.s()), xsum.s()), workflow="fanin_fails", sla="5m")
        assert wait_finished([instance], timeout=60) == {instance: "failed"}
        steps = _steps(instance)
        assert steps["boom"] == "failed" and steps["xsum"] != "done"
        assert "ValueError: boom" in (oms.get_instance(instance).error or "")
    finally:
        worker.stop()


def test_an_sla_task_nobody_serves_goes_red_and_is_escalated_once(shop: Backend) -> None:
    result = lonely.apply_async(queue="nobody_serves_this")  # tracked on its own: its decorator says sla="2s"
    with transaction() as session:
        instance = session.scalar(select(InstanceRow.id).where(InstanceRow.workflow_id == "tests.track_tasks.lonely"))
        assert instance is not None
        payload = session.scalar(select(InstanceRow.payload).where(InstanceRow.id == instance))
    assert payload == {"celery_task_id": result.id}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        oms.scan_sla()
        with transaction() as session:
            light = session.scalar(select(TaskRow.light).where(TaskRow.instance_id == instance))
        if light == "red":
            break
        time.sleep(0.5)
    assert light == "red"
    for _ in range(3):
        oms.scan_sla()
    with transaction() as session:
        violated = session.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.instance_id == instance, EventRow.kind == "task.sla_violated"))
        escalations = session.scalar(select(func.count()).select_from(InstanceRow).where(
            InstanceRow.workflow_id == "oms.sla_violation"))
    assert violated == 1 and escalations == 1


def _lapse(instance: str, timeout: float = 30) -> None:
    """Scan until the killed worker's claim lapsed and was settled (or re-queued)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        oms.scan_sla()
        kinds = [e.kind for e in oms.history(instance)]
        if "task.lease_expired" in kinds or kinds[-1] in ("workflow.done", "workflow.failed"):
            return
        time.sleep(0.5)
    pytest.fail(f"the claim of {instance} was not swept: {kinds}")


def _started(instance: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while "task.started" not in [e.kind for e in oms.history(instance)]:
        assert time.monotonic() < deadline, "the tracked task never started"
        time.sleep(0.1)


def _stored(celery_id: str) -> bool:
    """Whether the result backend holds the task's success (read as it is stored: no result consumer's cache)."""
    with redis.Redis.from_url(track_celeryconfig.RESULT_BACKEND) as client:
        raw = client.get(f"celery-task-meta-{celery_id}")
    return raw is not None and json.loads(raw)["status"] == "SUCCESS"


def test_kill_9_after_the_result_is_stored_is_settled_from_the_result_backend(shop: Backend, tmp_path: Path) -> None:
    worker = _worker(shop, tmp_path)
    try:
        instance = oms.track(slow_to_report.s(4), workflow="settles", sla="5m")
        _started(instance)
        deadline = time.monotonic() + 30
        while not _stored(f"{instance}.0"):  # stored; the record waits behind on_success
            assert time.monotonic() < deadline, "the result never reached the backend"
            time.sleep(0.1)
    finally:
        worker.kill()
    _lapse(instance)
    assert wait_finished([instance], timeout=10) == {instance: "done"}
    assert oms.get_instance(instance).results == {"slow_to_report": {"value": 40}}


def test_kill_9_while_running_puts_the_step_back_in_the_queue(shop: Backend, tmp_path: Path) -> None:
    worker = _worker(shop, tmp_path)
    try:
        instance = oms.track(nap.s(30), workflow="naps", sla="5m")
        _started(instance)
    finally:
        worker.kill()
    _lapse(instance)
    with transaction() as session:
        rows = session.execute(select(TaskRow.attempt, TaskRow.status, TaskRow.expires_at)
                               .where(TaskRow.instance_id == instance).order_by(TaskRow.attempt)).all()
    assert [(r.attempt, r.status) for r in rows] == [(1, "lapsed"), (2, "pending")]
    assert rows[1].expires_at == rows[0].expires_at  # its SLA keeps running
    assert oms.get_instance(instance).status == "running"
