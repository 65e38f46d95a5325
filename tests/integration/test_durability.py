"""Fault injection on real processes and services: every workflow still reaches its end.

What each test injects, and what it proves, is listed in tests/README.md.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from act import complete_task, fetch_task
from oms import Workflow, get_instance, history, scan_sla, start_workflow

from ..conftest import Backend
from ..invariants import assert_consistent
from ..services import REDIS_URL
from ..workers import BeatProcess, WorkerProcess, stop_all, wait_finished

pytestmark = pytest.mark.integration

#: Short clocks so that recovery takes seconds: claims lapse after 3 s without a heartbeat.
FAST = {
    "OMS_WORKER_LEASE": "3",
    "OMS_HEARTBEAT_INTERVAL": "0.5",
    "OMS_SLA_SCAN_INTERVAL": "1",
    "OMS_RECONCILE_AFTER": "3",
}
TWO_STEPS = {"id": "durable", "steps": [{"id": "first", "sla": "10m", "topic": "slow"},
                                        {"id": "second", "sla": "10m", "topic": "slow"}]}


class Cluster:
    """A beat and workers on the ``oms`` and ``slow`` queues, with fast recovery clocks."""

    def __init__(self, backend: Backend, cwd: Path) -> None:
        self.env = {**backend.env, **FAST}
        self.cwd = cwd
        self.beat = BeatProcess(self.env, cwd)
        self.upkeep = WorkerProcess(self.env, cwd, ["oms"], concurrency=1, name="upkeep")
        self.workers = [self.worker()]

    def worker(self) -> WorkerProcess:
        return WorkerProcess(self.env, self.cwd, ["slow", "suicide"], concurrency=2,
                             name=f"w{random.randrange(10**6)}")

    def supervise(self) -> None:
        """Replace workers that exited, as systemd or Kubernetes would.

        Celery's worker can stop itself when the broker vanishes under it (kombu
        raises ``AttributeError`` while restoring unacknowledged messages on a
        closed connection); production runs workers under a supervisor.
        """
        for i, worker in enumerate(self.workers):
            if worker.process.poll() is not None:
                worker.stop()
                self.workers[i] = self.worker()
        if self.upkeep.process.poll() is not None:
            self.upkeep.stop()
            self.upkeep = WorkerProcess(self.env, self.cwd, ["oms"], concurrency=1, name=f"upkeep{random.randrange(10**6)}")

    def stop(self) -> None:
        stop_all([*self.workers, self.upkeep])
        self.beat.stop()


@pytest.fixture
def cluster(backend: Backend, tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(backend, tmp_path)
    yield running
    running.stop()


def _start_many(n: int, sleep: float) -> list[str]:
    Workflow(**TWO_STEPS).save()
    return [start_workflow("durable", payload={"sleep": sleep, "n": i}) for i in range(n)]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_kill_9_workers_and_pool_children_while_200_workflows_run(cluster: Cluster) -> None:
    ids = _start_many(200, 0.05)
    kills = 0
    for round_ in range(6):
        time.sleep(1.5)
        victim = cluster.workers[-1]
        if round_ % 2 == 0 and victim.children():
            os.kill(random.choice(victim.children()), signal.SIGKILL)  # one pool child
        else:
            victim.kill()  # the whole worker
            cluster.workers.append(cluster.worker())
        kills += 1
    wait_finished(ids, timeout=180, poll=cluster.supervise)
    assert kills == 6
    assert_consistent(ids)
    lapsed = sum(1 for i in ids for e in history(i) if e.kind == "task.lease_expired")
    assert lapsed >= 1  # some steps were in flight when their worker died, and ran again


@pytest.mark.exclusive
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_redis_restart_without_persistence_loses_no_workflow(cluster: Cluster) -> None:
    ids = _start_many(200, 0.05)
    time.sleep(2)
    subprocess.run(["redis-cli", "-u", REDIS_URL, "shutdown", "nosave"], check=False, capture_output=True)
    time.sleep(1)
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
                    "--save", "", "--appendonly", "no"], check=True, capture_output=True)
    wait_finished(ids, timeout=180, poll=cluster.supervise)
    assert_consistent(ids)
    redispatched = sum(1 for i in ids for e in history(i) if e.kind == "task.redispatched")
    assert redispatched >= 1  # the broker lost queued messages; the reconciler replaced them


@pytest.mark.exclusive
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_restart_while_200_workflows_run(cluster: Cluster) -> None:
    ids = _start_many(200, 0.05)
    time.sleep(2)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    wait_finished(ids, timeout=180, poll=cluster.supervise)
    assert_consistent(ids)


def test_a_handler_that_kills_its_worker_fails_after_max_deliveries(cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "deliveries.log"
    Workflow(id="poison", steps=[{"id": "suicide", "sla": "10m", "max_deliveries": 3}]).save()
    instance_id = start_workflow("poison", payload={"log": str(log)})
    assert wait_finished([instance_id], timeout=90) == {instance_id: "failed"}
    time.sleep(2)  # nothing runs it again
    assert len(log.read_text().splitlines()) == 3
    info = get_instance(instance_id)
    assert [t.status for t in info.tasks] == ["lapsed", "lapsed", "failed"]  # two claims lost, the third failed
    assert info.tasks[-1].error == "worker_lost"
    kinds = [e.kind for e in history(instance_id)]
    assert kinds.count("task.lease_expired") == 2 and kinds[-2:] == ["task.failed", "workflow.failed"]
    assert_consistent([instance_id], final="failed")


def test_complete_racing_a_lease_expiry_completes_once(backend: Backend) -> None:
    Workflow(id="race", steps=[{"id": "racy", "sla": "10m"}]).save()
    ids = []
    for _ in range(30):
        ids.append(start_workflow("race", payload={}))
        task = fetch_task("racy", max_wait="2s", lease="0.2s")
        assert task is not None
        time.sleep(0.19)
        outcomes: list[str] = []

        def finish(task_id: str = task.id) -> None:
            try:
                complete_task(task_id)
                outcomes.append("completed")
            except Exception as exc:  # LeaseLost when the expiry won
                outcomes.append(type(exc).__name__)

        racer = threading.Thread(target=finish)
        racer.start()
        scan_sla()  # sweeps lapsed leases
        racer.join()
        if outcomes != ["completed"]:
            assert outcomes == ["LeaseLost"]
            again = fetch_task("racy", max_wait="2s")
            assert again is not None and again.attempt == 2 and again.instance_id == ids[-1]
            complete_task(again.id)
    assert_consistent(ids)
