"""A real ``oms api`` process on PostgreSQL and Redis: the shell worker, long polls, disconnects, logs, refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import create_engine, text

import oms
from oms.store import tokens

from ..browser import free_port
from ..conftest import EPA, Backend
from ..workers import ROOT

pytestmark = pytest.mark.integration

#: Trust authentication ignores it: it is here to be looked for in the logs.
PASSWORD = "pw-never-logged-7f3a"


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


class ApiProcess:
    """``oms api`` in a subprocess, its output in a file."""

    def __init__(self, backend: Backend, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()  # probed: another tier's API processes may be listening beside these
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"api-{self.port}.log"
        self._out = self.log.open("w")
        full = {**os.environ, **backend.env, "OMS_DATABASE_URL": _with_password(backend.database_url),
                "PYTHONPATH": str(ROOT), **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "oms.cli", "api", "--port", str(self.port), *args],
                                        cwd=cwd, env=full, stdout=self._out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"oms api exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"oms api did not answer within 30 s:\n{self.log.read_text()}")

    def stop(self) -> str:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(15)
        self._out.close()
        return self.log.read_text()


def admin_headers() -> dict[str, str]:
    """The header of a new admin token."""
    secret, _ = tokens.create("admin", name="ops")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def admin(postgres_backend: Backend) -> dict[str, str]:
    return admin_headers()


@pytest.fixture
def api(postgres_backend: Backend, admin: dict[str, str], tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(postgres_backend, tmp_path)
    yield process
    process.stop()


def _start(api: ApiProcess, headers: dict[str, str], payload: dict[str, Any]) -> str:
    response = httpx.post(f"{api.url}/v1/workflows/epa_waste_reg/instances", json={"payload": payload},
                          headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["instance_id"])


def _wait(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_shell_tax_validator_runs_the_seed_loop_over_http(api: ApiProcess, admin: dict[str, str],
                                                              tmp_path: Path) -> None:
    assert httpx.put(f"{api.url}/v1/workflows/epa_waste_reg", json=EPA, headers=admin).json() == {"version": 1}
    worker_token = subprocess.run(
        [sys.executable, "-m", "oms.cli", "token", "create", "--role", "worker", "--topics", "validate_tax_id",
         "--name", "irs-bot"], env={**os.environ, **api_env(api)}, capture_output=True, text=True, check=True,
        cwd=tmp_path).stdout.strip()
    shell = subprocess.Popen([str(ROOT / "examples/workers/tax_validator.sh")], cwd=tmp_path,
                             env={**os.environ, "OMS_API_URL": api.url, "OMS_TOKEN": worker_token,
                                  "IRS_LATENCY": "0"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        good, bad = _start(api, admin, {"form_id": "F1"}), _start(api, admin, {"form_id": "F2X"})
        for _ in (good, bad):  # collect_form by hand, as the portal's clerk would
            task = httpx.post(f"{api.url}/v1/topics/collect_form/fetch", json={"max_wait": "5s", "worker_id": "clerk"},
                              headers=admin, timeout=10).json()
            assert httpx.post(f"{api.url}/v1/tasks/{task['id']}/complete", json={"worker_id": "clerk"},
                              headers=admin).status_code == 200
        _wait(lambda: oms.get_instance(good).current_step == "charge_fee" and oms.get_instance(bad).status == "failed")
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        output = shell.communicate(timeout=10)[0]
    tax = [t for t in oms.get_instance(good).tasks if t.step_id == "validate_tax_id"]
    assert [(t.status, t.worker_id) for t in tax] == [("done", f"tax-validator-sh-{shell.pid}")]
    assert "IRS mismatch" in (oms.get_instance(bad).error or "")
    assert "200 tk-" in output


def test_the_shell_tax_validator_stops_on_a_token_it_may_not_use(api: ApiProcess, admin: dict[str, str],
                                                                 tmp_path: Path) -> None:
    """401 or 403: the token is not one for this topic; it stops and says so instead of asking forever."""
    other, _ = tokens.create("worker", name="fee-bot", topics=["charge_fee"])
    for token, status in (("not-a-token", 401), (other, 403)):
        ended = subprocess.run([str(ROOT / "examples/workers/tax_validator.sh")], cwd=tmp_path, timeout=30,
                               env={**os.environ, "OMS_API_URL": api.url, "OMS_TOKEN": token},
                               capture_output=True, text=True)
        assert ended.returncode == 1, ended.stderr
        assert f"fetch refused ({status})" in ended.stderr and "worker token for validate_tax_id" in ended.stderr


def api_env(api: ApiProcess) -> dict[str, str]:
    return {"OMS_DATABASE_URL": oms.settings.get_settings().database_url,
            "OMS_BROKER_URL": oms.settings.get_settings().broker_url, "PYTHONPATH": str(ROOT)}


def _connections(database_url: str) -> int:
    name = database_url.rsplit("/", 1)[1]
    admin = create_engine(database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :n"),
                                    {"n": name}).scalar_one())
    finally:
        admin.dispose()


def _threads(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("Threads:")[1].split()[0])


def test_idle_long_polls_hold_no_thread_or_connection_each_and_one_is_woken(
        api: ApiProcess, admin: dict[str, str], postgres_backend: Backend) -> None:
    httpx.put(f"{api.url}/v1/workflows/epa_waste_reg", json=EPA, headers=admin)
    polls = 100
    results: list[int] = []
    limits = httpx.Limits(max_connections=polls + 5)
    with httpx.Client(limits=limits, timeout=30) as client:
        def poll() -> None:
            results.append(client.post(f"{api.url}/v1/topics/collect_form/fetch", json={"max_wait": "6s"},
                                       headers=admin).status_code)

        threads = [threading.Thread(target=poll) for _ in range(polls)]
        for thread in threads:
            thread.start()
        time.sleep(2)  # all waiting
        assert not results
        assert _threads(api.process.pid) < 50, "a thread per poll"  # the thread pool's 40, uvicorn's, one listener
        assert _connections(postgres_backend.database_url) <= 25, "a database connection per poll"
        started = time.monotonic()
        _start(api, admin, {"form_id": "F1"})
        _wait(lambda: 200 in results, timeout=3)
        woke = time.monotonic() - started
        for thread in threads:
            thread.join(15)
    assert sorted(results) == [200] + [204] * (polls - 1)
    assert woke < 1.0


def test_a_caller_that_disconnects_mid_poll_leaves_nothing_claimed(api: ApiProcess, admin: dict[str, str]) -> None:
    httpx.put(f"{api.url}/v1/workflows/epa_waste_reg", json=EPA, headers=admin)
    body = json.dumps({"max_wait": "20s", "worker_id": "vanishing"}).encode()
    with socket.create_connection(("127.0.0.1", api.port)) as raw:
        raw.sendall(b"POST /v1/topics/collect_form/fetch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"{next(iter(admin))}: {admin['Authorization']}\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(1)  # the poll is waiting
    time.sleep(0.5)  # ... and its caller has gone
    instance = _start(api, admin, {"form_id": "F1"})
    time.sleep(1.5)
    task = oms.get_instance(instance).tasks[0]
    assert (task.status, task.worker_id) == ("pending", None), "a step was claimed for a caller that left"
    found = httpx.post(f"{api.url}/v1/topics/collect_form/fetch", json={"max_wait": "5s"}, headers=admin,
                       timeout=10).json()
    assert found["id"] == task.id and found["attempt"] == 1


def test_a_token_revoked_from_the_cli_stops_at_once(api: ApiProcess, tmp_path: Path) -> None:
    secret, _ = tokens.create("reader", name="auditor")
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{api.url}/v1/instances", headers=headers).status_code == 200
    subprocess.run([sys.executable, "-m", "oms.cli", "token", "revoke", "auditor"], cwd=tmp_path, check=True,
                   env={**os.environ, **api_env(api)}, capture_output=True)
    assert httpx.get(f"{api.url}/v1/instances", headers=headers).status_code == 401


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_oms_api_workers_serve_one_port_from_several_processes(postgres_backend: Backend, admin: dict[str, str],
                                                               tmp_path: Path) -> None:
    api = ApiProcess(postgres_backend, tmp_path, "--workers", "2", env={"OMS_API_ACCESS_LOG": "false"})
    try:
        # The port answers once the first process is up; the second may still be importing.
        _wait(lambda: api.log.read_text().count("Application startup complete.") == 2, timeout=30)
        served = {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", api.log.read_text())}
        assert len(served) == 2 and served <= set(_children(api.process.pid)), api.log.read_text()
        httpx.put(f"{api.url}/v1/workflows/epa_waste_reg", json=EPA, headers=admin)
        results: list[dict[str, Any]] = []

        def poll() -> None:  # each on a connection of its own, accepted by either process
            found = httpx.post(f"{api.url}/v1/topics/collect_form/fetch", json={"max_wait": "20s", "worker_id": "w"},
                               headers=admin, timeout=30)
            assert found.status_code == 200, found.text
            results.append(found.json())

        threads = [threading.Thread(target=poll) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(2)  # all waiting, in both processes' long polls
        instances = {_start(api, admin, {"form_id": f"F{n}"}) for n in range(8)}
        for thread in threads:
            thread.join(25)
        assert sorted(r["instance_id"] for r in results) == sorted(instances), "a poll was not woken, or woken twice"
        for task in results:
            done = httpx.post(f"{api.url}/v1/tasks/{task['id']}/complete", json={"worker_id": "w"}, headers=admin)
            assert done.status_code == 200, done.text
        assert all(oms.get_instance(i).current_step == "validate_tax_id" for i in instances)

        secret, _ = tokens.create("reader", name="auditor")
        reader = {"Authorization": f"Bearer {secret}", "Connection": "close"}
        assert httpx.get(f"{api.url}/v1/instances", headers=reader).status_code == 200
        subprocess.run([sys.executable, "-m", "oms.cli", "token", "revoke", "auditor"], cwd=tmp_path, check=True,
                       env={**os.environ, **api_env(api)}, capture_output=True)
        assert {httpx.get(f"{api.url}/v1/instances", headers=reader).status_code for _ in range(10)} == {401}
    finally:
        children = _children(api.process.pid)
        log = api.stop()
    assert "Traceback" not in log, log
    _wait(lambda: not [pid for pid in children if Path(f"/proc/{pid}").exists()], timeout=5)  # none outlives it


def test_logs_hold_no_token_payload_or_password(postgres_backend: Backend, admin: dict[str, str],
                                                tmp_path: Path) -> None:
    api = ApiProcess(postgres_backend, tmp_path)
    try:
        httpx.put(f"{api.url}/v1/workflows/epa_waste_reg", json=EPA, headers=admin)
        _start(api, admin, {"form_id": "SECRET-PAYLOAD-123"})
        httpx.get(f"{api.url}/v1/instances?workflow=epa_waste_reg", headers=admin)
        httpx.get(f"{api.url}/v1/instances", headers={"Authorization": "Bearer wrong-token-abc"})
        httpx.get(f"{api.url}/readyz")
    finally:
        log = api.stop()
    assert "POST /v1/workflows/epa_waste_reg/instances" in log  # the access log is on
    token = admin["Authorization"].split()[1]
    for secret in (token, "wrong-token-abc", "SECRET-PAYLOAD-123", PASSWORD):
        assert secret not in log


def test_oms_api_refuses_to_start_when_it_must(postgres_backend: Backend, tmp_path: Path) -> None:
    env = {**os.environ, **postgres_backend.env, "PYTHONPATH": str(ROOT)}

    def refused(*args: str, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "oms.cli", "api", "--port", "8199", *args], cwd=tmp_path,
                              env={**env, **(extra or {})}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]

    assert "no API token exists" in refused()
    assert "loopback" in refused("--host", "0.0.0.0", "--insecure-no-auth")
    behind = oms.settings.get_settings().database_url.rsplit("/", 1)[0] + "/oms_api_no_schema"
    from ..services import POSTGRES_ADMIN

    admin_engine = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "oms_api_no_schema"'))
        conn.execute(text('CREATE DATABASE "oms_api_no_schema"'))
    try:
        assert "run `oms db upgrade`" in refused(extra={"OMS_DATABASE_URL": behind})
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "oms_api_no_schema" WITH (FORCE)'))
        admin_engine.dispose()


def test_behind_a_tls_proxy_it_believes_signs_in_with_secure_cookies(postgres_backend: Backend,
                                                                    tmp_path: Path) -> None:
    secret, _ = tokens.create("reader", name="page")
    forwarded = {"X-Forwarded-Proto": "https", "Origin": "https://oms.agency.gov", "Host": "oms.agency.gov"}

    def sign_in(api: ApiProcess) -> httpx.Response:
        return httpx.post(f"{api.url}/login", data={"token": secret}, headers=forwarded)

    trusting = ApiProcess(postgres_backend, tmp_path, "--forwarded-allow-ips", "127.0.0.1")
    try:
        answer = sign_in(trusting)
    finally:
        trusting.stop()
    assert answer.status_code == 303, answer.text
    cookies = answer.headers.get_list("set-cookie")
    assert len(cookies) == 2 and all("; secure" in c.lower() for c in cookies), cookies
    # by default no proxy is believed: the browser's https origin is another site's
    plain = ApiProcess(postgres_backend, tmp_path)
    try:
        assert sign_in(plain).status_code == 403
    finally:
        plain.stop()


def test_insecure_mode_is_announced_at_every_start(postgres_backend: Backend, tmp_path: Path) -> None:
    for _ in range(2):
        api = ApiProcess(postgres_backend, tmp_path, "--insecure-no-auth")
        assert httpx.get(f"{api.url}/v1/instances").status_code == 200
        assert "--insecure-no-auth" in api.stop()


def test_metrics_on_postgres_read_open_rows_through_partial_indexes(api: ApiProcess, admin: dict[str, str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from oms.ops import metrics
    from oms.states import TaskStatus
    from oms.store.db import transaction

    httpx.put(f"{api.url}/v1/workflows/epa_waste_reg", json=EPA, headers=admin)
    instance = _start(api, admin, {"form_id": "F1"})
    task = httpx.post(f"{api.url}/v1/topics/collect_form/fetch", json={"max_wait": "5s", "worker_id": "w"},
                      headers=admin, timeout=10).json()
    httpx.post(f"{api.url}/v1/tasks/{task['id']}/complete", json={"worker_id": "w"}, headers=admin)
    metrics.roll_up(oms.engine.door.utcnow() + metrics.SETTLE * 2)
    reader, _ = tokens.create("reader", name="prometheus")
    scraped = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {reader}"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    assert [(s.labels, s.value) for s in families["oms_open_steps"].samples] == [
        ({"workflow": "epa_waste_reg", "step": "validate_tax_id", "light": "green"}, 1.0)]
    assert [s.value for s in families["oms_steps_done"].samples if s.name.endswith("_total")] == [1.0]
    assert oms.get_instance(instance).status == "running"
    # a scrape must not read finished rows: the gauges' queries are served by the partial indexes
    with transaction() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        for query, index in ((metrics.open_steps(TaskStatus.PENDING, oms.engine.door.utcnow()), "ix_oms_tasks_pending"),
                             (metrics.open_steps(TaskStatus.RUNNING, oms.engine.door.utcnow()), "ix_oms_tasks_lease"),
                             (metrics.unfinished_instances(), "ix_oms_instances_unfinished")):
            compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))
            assert index in plan, plan


def forgotten_at_once(database_url: str, secret: str, revoke: Callable[[], object]) -> None:
    """An API process's token cache remembers ``secret`` as live, and forgets it within 0.2 s of ``revoke()``."""
    from oms.api import auth
    from oms.api.revocations import TokenCache

    cache = TokenCache(database_url)
    auth.use_cache(cache)
    try:
        assert cache.listening.wait(10)
        assert auth.lookup(secret) is not None
        assert cache.get(tokens.digest(secret)) is not None  # remembered: the next request reads no row
        revoke()
        revoked = time.monotonic()
        while auth.lookup(secret) is not None:
            assert time.monotonic() - revoked < 0.2, "a revoked token was still accepted"
            time.sleep(0.001)
        assert cache.get(tokens.digest(secret)) is None
    finally:
        auth.use_cache(None)
        cache.close()


def test_cached_tokens_are_forgotten_when_any_token_is_revoked(postgres_backend: Backend) -> None:
    secret, _ = tokens.create("reader", name="cached")
    forgotten_at_once(postgres_backend.database_url, secret, lambda: tokens.revoke("cached"))


def test_a_long_poll_is_woken_on_rabbitmq(postgres_url: str, tmp_path: Path) -> None:
    import uuid

    from ..conftest import _configure
    from ..services import RABBITMQ_URL

    backend = _configure("rabbitmq", postgres_url, RABBITMQ_URL, tmp_path)
    from oms.store.db import transaction

    with transaction() as session:
        session.execute(text("TRUNCATE oms_events, oms_signals, oms_tasks, oms_instances, oms_definitions, oms_api_tokens, oms_users"))
    secret, _ = tokens.create("admin", name="ops")
    headers = {"Authorization": f"Bearer {secret}"}
    topic = f"rmq_wake_{uuid.uuid4().hex[:8]}"  # a queue no other test has filled
    oms.Workflow(id=topic, steps=[{"id": topic, "sla": "1h"}]).save()
    api = ApiProcess(backend, tmp_path)
    results: list[int] = []
    try:
        with httpx.Client(timeout=30) as client:
            def poll() -> None:
                results.append(client.post(f"{api.url}/v1/topics/{topic}/fetch", json={"max_wait": "5s"},
                                           headers=headers).status_code)

            threads = [threading.Thread(target=poll) for _ in range(3)]
            for thread in threads:
                thread.start()
            time.sleep(1.5)
            assert not results
            started = time.monotonic()
            oms.start_workflow(topic, {})
            _wait(lambda: 200 in results, timeout=3)
            assert time.monotonic() - started < 1.0
            for thread in threads:
                thread.join(15)
    finally:
        api.stop()
        from oms.store.db import dispose_all

        dispose_all()
    assert sorted(results) == [200, 204, 204]
