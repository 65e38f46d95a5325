"""Migrations on PostgreSQL, first use of a fresh database by many processes, and upgrading release 0.1.0.

The 0.1.0 databases are dumps made by release 0.1.0's own code
(``tests/fixtures/make_release_0_1_0.py`` says how): finished instances, and
running ones whose messages are gone, whose pull claim lapsed, whose retry waits.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

import oms
from oms import get_instance, history
from oms.store.db import database, dispose_all, transaction
from oms.store.schema import head
from oms.store.tables import EventRow, InstanceRow, TaskRow

from .. import services
from ..conftest import Backend, _configure
from ..handlers import EPA_STEPS
from ..invariants import assert_consistent
from ..unit.test_schema import assert_models_match_migrations
from ..workers import ROOT, BeatProcess, WorkerProcess, wait_finished

pytestmark = pytest.mark.integration

OMS = Path(sys.executable).with_name("oms")
FIXTURES = ROOT / "tests" / "fixtures"
FAST = {"OMS_WORKER_LEASE": "3", "OMS_HEARTBEAT_INTERVAL": "0.5", "OMS_SLA_SCAN_INTERVAL": "1",
        "OMS_RECONCILE_AFTER": "2"}


def run(*command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """An empty PostgreSQL database: no schema."""
    url = services.create_postgres_database(upgrade=False)
    yield url
    dispose_all()
    services.drop_postgres_database(url)


def test_models_and_migrations_agree_on_postgres(postgres_backend: Backend) -> None:
    assert_models_match_migrations(database().engine)


def test_workers_beat_and_the_cli_refuse_a_database_without_the_schema(fresh_postgres: str, tmp_path: Path) -> None:
    env = {"OMS_DATABASE_URL": fresh_postgres, "OMS_BROKER_URL": services.REDIS_URL}
    expected = f"error: the database at {fresh_postgres} has no oms schema: run `oms db upgrade`"
    for command in ([str(OMS), "list"], [str(OMS), "start", "epa_waste_reg"],
                    [sys.executable, "-m", "celery", "-A", "oms", "worker", "-Q", "x", "--without-mingle"],
                    [sys.executable, "-m", "celery", "-A", "oms", "beat", "-s", str(tmp_path / "schedule")]):
        result = run(*command, env=env, cwd=tmp_path)
        assert result.returncode == 1, (command, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr, (command, result.stderr)
    assert run(str(OMS), "db", "current", env=env, cwd=tmp_path).stdout.strip() == \
        f"{fresh_postgres}: - (no schema; run `oms db upgrade` to create it at {head()})"


def test_many_processes_using_a_fresh_database_at_once_all_succeed(fresh_postgres: str, tmp_path: Path) -> None:
    """Ten `oms db upgrade` and ten processes allowed to upgrade on first use, all at once: none fails."""
    env = {**os.environ, "OMS_DATABASE_URL": fresh_postgres, "PYTHONPATH": str(ROOT)}
    first_use = "import oms.reads.instances as q; print(len(q.list_instances()))"
    processes = [subprocess.Popen([str(OMS), "db", "upgrade"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(10)]
    processes += [subprocess.Popen([sys.executable, "-c", first_use], env={**env, "OMS_AUTO_UPGRADE": "always"},
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(10)]
    results = [(p.wait(120), *p.communicate()) for p in processes]
    assert all(code == 0 for code, _, _ in results), [err for code, _, err in results if code]
    upgrades = [out.strip() for _, out, _ in results[:10]]
    assert sum("upgraded from an empty database" in line for line in upgrades) <= 1, upgrades
    assert all(out.strip() == "0" for _, out, _ in results[10:])
    oms.configure(database_url=fresh_postgres)
    assert_models_match_migrations(database().engine)


def _restore(dialect: str, tmp_path: Path) -> str:
    """A database holding release 0.1.0's fixture; its URL."""
    dump = (FIXTURES / f"release-0.1.0.{dialect}.sql").read_text()
    if dialect == "sqlite":
        path = tmp_path / "oms.db"
        connection = sqlite3.connect(path)
        connection.executescript(dump)
        connection.close()
        return f"sqlite:///{path}"
    url = services.create_postgres_database(upgrade=False)
    script = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))  # psql's meta-commands
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(script.encode())
    return url


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_release_0_1_0_database_upgrades_and_its_running_instances_finish(dialect: str, tmp_path: Path) -> None:
    url = _restore(dialect, tmp_path)
    broker = "filesystem://" if dialect == "sqlite" else services.REDIS_URL
    if dialect == "postgres":
        services.flush_redis()
    backend = Backend(dialect, url, broker, tmp_path / ".oms")
    env = {**backend.env, "OMS_AUTO_UPGRADE": "never"}  # the upgrade is oms db upgrade's, even on SQLite
    refused = run(str(OMS), "list", env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert f"is at schema revision release 0.1.0's (no revision recorded), this oms needs {head()}: run `oms db " \
           "upgrade`" in refused.stderr
    upgraded = run(str(OMS), "db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith(f"adopted release 0.1.0's tables at revision 0001, upgraded to "
                                            f"revision {head()}"), upgraded.stdout
    assert "(the newest)" in run(str(OMS), "db", "current", env=env, cwd=tmp_path).stdout

    _configure(dialect, url, broker, tmp_path)
    oms.configure(database_url=url, broker_url=broker, home=backend.home, auto_upgrade="never")
    assert_models_match_migrations(database().engine)
    with transaction() as s:
        statuses = dict(s.execute(select(InstanceRow.id, InstanceRow.status)).all())
        finished_rows = {i: (s.scalar(select(func.count()).select_from(TaskRow).where(TaskRow.instance_id == i)),
                             s.scalar(select(func.count()).select_from(EventRow).where(EventRow.instance_id == i)))
                         for i, status in statuses.items() if status != "running"}
    running = [i for i, status in statuses.items() if status == "running"]
    assert sorted(statuses.values()).count("done") == 3 and len(running) >= 8, statuses

    fast = {**env, **FAST}
    beat = BeatProcess(fast, tmp_path)
    # threads, not prefork: every step of the fixture is long past its SLA, and a prefork worker would stop
    # each handler at once (the breach policy is not what this test is about)
    workers = [WorkerProcess(fast, tmp_path, ["oms", *EPA_STEPS, "flaky", "slow", "sla_violation", "sla_warning"],
                             pool="threads", concurrency=4)]
    try:
        assert set(wait_finished(running, timeout=120).values()) == {"done"}
    finally:
        for process in workers:
            process.stop()
        beat.stop()
    assert_consistent(running)
    kinds = [e.kind for i in running for e in history(i)]
    assert "task.redispatched" in kinds  # their messages were not in the dump: the reconciler sent them again
    assert "task.lease_expired" in kinds  # the pull claim that lapsed under 0.1.0 was offered again
    with transaction() as s:  # finished instances kept every row
        for instance_id, (tasks, events) in finished_rows.items():
            assert s.scalar(select(func.count()).select_from(TaskRow).where(TaskRow.instance_id == instance_id)) \
                == tasks
            assert s.scalar(select(func.count()).select_from(EventRow)
                            .where(EventRow.instance_id == instance_id)) >= events
    failed = next(i for i, status in statuses.items() if status == "failed")
    assert get_instance(failed).error == "step 'validate_tax_id' failed after 1 attempt(s): IRS mismatch"
    if dialect == "postgres":
        dispose_all()
        services.drop_postgres_database(url)
