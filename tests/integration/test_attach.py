"""A shop's own Celery project (Celery's examples/django layout, tests/shop) running the engine via ``oms.attach(app)``.

Real ``celery -A proj worker`` and ``celery -A proj beat`` processes, the engine on
PostgreSQL, the shop's broker RabbitMQ (a virtual host of the test's own) or Redis.
``SHOP_ATTACH=0`` runs the same project without the engine, to compare the shop's
own tasks both ways.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

import oms
from oms import Workflow, get_instance, history
from oms.store.db import dispose_all

from ..services import HINT, RABBITMQ_URL, create_postgres_database, drop_postgres_database, flush_redis
from ..workers import BeatProcess, WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

SHOP = Path(__file__).resolve().parent.parent / "shop"
QUEUES = ["celery", "oms", "shop_review", "sla_violation"]
#: The shop's own Redis databases: its broker (when Redis) and its result backend.
SHOP_REDIS_BROKER = "redis://127.0.0.1:6379/7"
SHOP_RESULTS = "redis://127.0.0.1:6379/8"
SCAN_INTERVAL = 1.0
OMS = Path(sys.executable).with_name("oms")


def _rabbitmqctl(*args: str) -> None:
    try:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed ({exc}); {HINT}", pytrace=False)


@pytest.fixture(scope="module")
def shop_database() -> Iterator[str]:
    url = create_postgres_database()
    yield url
    dispose_all()
    drop_postgres_database(url)


@pytest.fixture(params=["rabbitmq", "redis"])
def shop_broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """The shop's broker: a RabbitMQ virtual host made for the test (no other test's worker reads its queues),
    or a Redis database of the shop's own, flushed."""
    if request.param == "redis":
        flush_redis(SHOP_REDIS_BROKER)
        yield SHOP_REDIS_BROKER
        return
    vhost = f"shop_{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield RABBITMQ_URL.rstrip("/") + "/" + vhost
    _rabbitmqctl("delete_vhost", vhost)


@dataclass
class Shop:
    """The project in tests/shop, pointed at the test's broker, result backend and engine database."""

    broker: str
    database: str
    tmp: Path

    @property
    def escalations(self) -> Path:
        return self.tmp / "escalations.jsonl"

    def env(self, attach: bool = True, **more: str) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "proj.settings",
            "PYTHONPATH": str(SHOP),
            "SHOP_BROKER_URL": self.broker,
            "SHOP_RESULT_BACKEND": SHOP_RESULTS,
            "SHOP_DATABASE_URL": self.database,
            "SHOP_SLA_SCAN_INTERVAL": str(SCAN_INTERVAL),
            "SHOP_ESCALATIONS": str(self.escalations),
            "SHOP_ATTACH": "1" if attach else "0",
            **more,
        }

    def worker(self, name: str, attach: bool = True, **more: str) -> WorkerProcess:
        return WorkerProcess(self.env(attach, **more), self.tmp, QUEUES, modules=None, app="proj", workdir=SHOP,
                             name=name)

    def beat(self) -> BeatProcess:
        return BeatProcess(self.env(), self.tmp, app="proj", workdir=SHOP)

    def oms(self, *args: str) -> str:
        """``oms --app proj ARGS`` in the project's folder: its output (asserting it succeeded)."""
        env = {**os.environ, **self.env(), "PYTHONPATH": os.pathsep.join([str(SHOP.parent.parent), str(SHOP)])}
        done = subprocess.run([str(OMS), "--app", "proj", *args], cwd=SHOP, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"oms --app proj {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
        return done.stdout

    def run(self, code: str, attach: bool = True) -> list[str]:
        """Run ``code`` in the shop's Django shell (``manage.py shell -c``), as a view would; its output's lines."""
        env = {**os.environ, **self.env(attach),
               "PYTHONPATH": os.pathsep.join([str(SHOP.parent.parent), str(SHOP)])}
        done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=SHOP, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()


@pytest.fixture
def shop(shop_broker: str, shop_database: str, tmp_path: Path) -> Iterator[Shop]:
    flush_redis(SHOP_RESULTS)
    oms.configure(database_url=shop_database, broker_url=shop_broker, home=tmp_path / ".oms")
    yield Shop(shop_broker, shop_database, tmp_path)
    dispose_all()


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen within {timeout}s")
        time.sleep(0.2)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_shops_worker_runs_its_steps_and_its_beat_escalates_a_breach_once(shop: Shop) -> None:
    Workflow(id="shop_order", steps=[{"id": "shop_review", "sla": "1m"}]).save()
    Workflow(id="shop_unserved", steps=[{"id": "nobody_serves", "sla": "2s"}]).save()
    worker = shop.worker("w1")
    beat = shop.beat()
    try:
        # the shop's existing tasks as steps, defined in the shop's process (which imports and checks them)
        # and started as a Django view would: published on the shop's broker, to the queue its tasks go to
        done_id, late_id, tasks_id, chain_id, celery_id = shop.run(
            "import oms; from celery import chain; from demoapp.tasks import add, inspect_site, mul; "
            "oms.Workflow(id='shop_sum', steps=["
            "{'id': 'add', 'task': 'demoapp.tasks.add', 'sla': '1m'}, "
            "{'id': 'mul', 'task': 'demoapp.tasks.mul', 'sla': '1m'}]).save(); "
            "print(oms.start_workflow('shop_order', payload={'order': 7})); "
            "print(oms.start_workflow('shop_unserved', payload={'order': 8})); "
            "print(oms.start_workflow('shop_sum', payload={'x': 2, 'y': 3})); "
            # a plain chain, tracked; and a task carrying sla=, tracked on its own when called
            "print(oms.track(chain(add.s(2, 2), mul.s(4)), workflow='nightly_billing', sla='30m')); "
            "print(inspect_site.delay('F8700-12-42').id)")[-5:]
        assert wait_finished([done_id, tasks_id, chain_id], timeout=30) == {
            done_id: "done", tasks_id: "done", chain_id: "done"}
        chained = get_instance(chain_id)
        assert [(t.step_id, t.status, t.light) for t in chained.tasks] == [("add", "done", "green"),
                                                                          ("mul", "done", "green")]
        assert chained.results == {"add": {"value": 4}, "mul": {"value": 16}}
        assert get_instance(done_id).results == {"shop_review": {"reviewed": 7, "by": "shop"}}
        # add(x=2, y=3) = 5, then mul(x=2, y=3): the payload's keys; add's result is {"value": 5}
        assert get_instance(tasks_id).results == {"add": {"value": 5}, "mul": {"value": 6}}
        assert [t.worker_id.split("@")[0] for t in get_instance(tasks_id).tasks] == ["w1", "w1"]

        inspection = shop.oms("list", "--workflow", "demoapp.tasks.inspect_site", "--json")
        # (the database is the module's: the other broker's run left its own inspection there)
        [inspection_id] = [i["id"] for i in json.loads(inspection)
                           if get_instance(i["id"]).payload == {"celery_task_id": celery_id}]

        def escalations_of(instance_id: str) -> list[dict[str, object]]:
            return [e for e in map(json.loads, _lines(shop.escalations)) if e["instance_id"] == instance_id]

        _until(lambda: bool(escalations_of(late_id)) and bool(escalations_of(inspection_id)), 20,
               f"escalations of {late_id} and {inspection_id}")
        time.sleep(4 * SCAN_INTERVAL)  # more scans: nothing escalated again
        [escalation] = escalations_of(late_id)
        assert escalation["action"] == "sla_violation" and escalation["step"] == "nobody_serves"
        assert sorted(json.loads(line)["instance_id"] for line in _lines(shop.escalations)) == sorted(
            [late_id, inspection_id])
        shown = json.loads(shop.oms("status", inspection_id, "--json"))
        assert shown["status"] == "running" and shown["tasks"][0]["light"] == "red", shown
        [task] = get_instance(late_id).tasks
        assert task.light == "red" and task.status == "pending"
        assert [e.kind for e in history(late_id)].count("task.sla_violated") == 1
        # the oms command, loading the shop's app, reads the same database from the app's configuration
        shown = json.loads(shop.oms("status", late_id, "--json"))
        assert shown["status"] == "running" and shown["tasks"][0]["light"] == "red", shown
        assert json.loads(shop.oms("status", done_id, "--json"))["status"] == "done"
    finally:
        beat.stop()
        worker.stop()


def test_the_shops_own_tasks_run_the_same_with_and_without_attach(shop: Shop) -> None:
    """Results in the shop's backend, the same options on the worker, and early acks: a task killed mid-run
    is not delivered again (the control, a task asking for late acks itself, is)."""
    seen: dict[bool, dict[str, object]] = {}
    for attach in (False, True):
        mode = "attached" if attach else "plain"
        naps, late_naps = shop.tmp / f"naps-{mode}.log", shop.tmp / f"late-naps-{mode}.log"
        worker = shop.worker(mode, attach, SHOP_VISIBILITY_TIMEOUT="3")
        try:
            added, options = shop.run(
                "import json; from demoapp.tasks import add, options; r = add.delay(2, 3); "
                "print(r.id, r.get(timeout=30)); print(json.dumps(options.delay().get(timeout=30)))", attach)[-2:]
            task_id, value = added.split()
            assert value == "5"
            with redis.Redis.from_url(SHOP_RESULTS) as results:
                stored = json.loads(results.get(f"celery-task-meta-{task_id}") or b"{}")
            assert (stored.get("status"), stored.get("result")) == ("SUCCESS", 5), stored
            seen[attach] = json.loads(options)
            if not attach:  # a worker importing oms without attaching it opens no engine database
                assert not (SHOP / "oms.db").exists()
            shop.run("from demoapp.tasks import nap, nap_late; "
                     f"nap.delay(60, {str(naps)!r}); nap_late.delay(60, {str(late_naps)!r})", attach)
            _until(lambda: len(_lines(naps)) == 1 and len(_lines(late_naps)) == 1, 20, "both naps started")
            worker.kill()
        finally:
            worker.stop()
        again = shop.worker(f"{mode}-again", attach, SHOP_VISIBILITY_TIMEOUT="3")
        try:
            _until(lambda: len(_lines(late_naps)) == 2, 30, f"the late-acked nap delivered again ({mode})")
            time.sleep(2)
            assert len(_lines(naps)) == 1, f"an early-acked task was delivered again ({mode})"
        finally:
            again.stop()
    assert seen[True] == seen[False]
    assert seen[True]["acks_late"] is False and seen[True]["serializer"] == "json"
    assert seen[True]["routing_key"] == "celery" and seen[True]["task_acks_late"] is False
