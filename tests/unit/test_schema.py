"""Migrations and models agree; a database's schema is checked on first use; upgrades are safe to race.

``tests/integration/test_migrations.py`` runs the agreement check on PostgreSQL too,
and upgrades databases made by release 0.1.0.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Engine, inspect, text

import oms
from oms.cli import main
from oms.exceptions import SchemaAhead, SchemaBehind, SchemaError
from oms.ops import doctor
from oms.store.db import connect, database, dispose_all
from oms.store.schema import VERSION_TABLE, alembic_config, head, history, upgrade
from oms.store.tables import Base

ROOT = Path(__file__).resolve().parents[2]


def _predicate(value: Any) -> str:
    """A partial index's condition, as both dialects can be compared on: no casts, parentheses or spaces."""
    return "" if value is None else re.sub(r"::\w+|[()\s]", "", str(value)).lower()


def assert_models_match_migrations(engine: Engine) -> None:
    """Autogenerate finds no difference between the models and a database at the newest revision.

    Alembic does not compare partial indexes' conditions: they are compared here.
    """
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "version_table": VERSION_TABLE, "compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []
        found = inspect(connection)
        dialect = connection.dialect.name
        for table in Base.metadata.sorted_tables:
            reflected = {index["name"]: index for index in found.get_indexes(table.name)}
            for index in table.indexes:
                wanted = index.dialect_options[dialect].get("where")
                have = reflected[index.name].get("dialect_options", {}).get(f"{dialect}_where")
                assert _predicate(have) == _predicate(wanted), (index.name, have)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'oms.db'}"
    oms.configure(database_url=url, broker_url="filesystem://", home=tmp_path / ".oms")
    yield url
    dispose_all()


def test_models_and_migrations_agree_on_sqlite(sqlite_url: str) -> None:
    assert_models_match_migrations(database(sqlite_url).engine)


def test_the_newest_revision_is_read_as_alembic_reads_it() -> None:
    """The check on first use reads the revisions from the files, without importing Alembic."""
    scripts = ScriptDirectory.from_config(alembic_config())
    assert [head()] == list(scripts.get_heads())
    assert [r.revision for r in history()] == [s.revision for s in scripts.walk_revisions()]
    assert history()[-1].revision == "0001" and history()[-1].down_revision is None


def test_an_empty_sqlite_database_upgrades_itself_on_first_use(sqlite_url: str) -> None:
    with database(sqlite_url).engine.connect() as connection:
        assert connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == head()


def test_a_database_behind_is_refused_with_the_command_to_run(sqlite_url: str, tmp_path: Path) -> None:
    oms.configure(database_url=sqlite_url, auto_upgrade="never")
    with pytest.raises(SchemaBehind, match=r"has no oms schema: run `oms db upgrade`$"):
        database()
    engine = connect(sqlite_url)
    upgrade(engine, "0001")
    if head() != "0001":  # once a second revision exists, a database at the first is behind
        with pytest.raises(SchemaBehind, match=rf"is at schema revision 0001, this oms needs {head()}: run"):
            database()
    upgrade(engine)
    assert database().dialect == "sqlite"
    dispose_all()
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaAhead, match="at schema revision 9999, unknown to this oms.*upgrade oms"):
        database()
    # every other look at the schema says the same: ahead, upgrade oms (not `oms db upgrade`, which cannot)
    shown = CliRunner().invoke(main, ["db", "current"])
    assert shown.exit_code == 0 and "9999 (ahead of" in shown.stdout and "upgrade oms" in shown.stdout, shown.output
    refused = CliRunner().invoke(main, ["db", "upgrade"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output, refused.output
    assert refused.stderr.strip().startswith("error: the database at") and "upgrade oms" in refused.stderr
    check = doctor.database_check()
    assert check.status == doctor.FAIL and "unknown to this oms" in check.detail and "oms db upgrade" not in check.detail


def test_tables_not_made_by_release_0_1_0_are_not_adopted(sqlite_url: str) -> None:
    engine = connect(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE oms_instances (id VARCHAR(40) PRIMARY KEY)"))
    with pytest.raises(SchemaError, match="no schema revision, and table oms_definitions is missing"):
        upgrade(engine)
    engine.dispose()


def test_several_processes_using_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    """Eight processes open one empty SQLite database at once: one creates the schema, none fails."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    script = ("import sys, oms; oms.configure(database_url=sys.argv[1]); "
              "print(len(oms.reads.instances.list_instances()))")
    processes = [subprocess.Popen([sys.executable, "-c", script, url], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.wait(60), *p.communicate()) for p in processes]
    assert all(code == 0 and out.strip() == "0" for code, out, _ in results), results


def test_a_connection_switching_to_wal_waits_out_another_holding_the_write_lock(tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once, without its busy wait, while another connection holds the write
    lock (how eight processes on a fresh database failed one time in five): the engine's connection waits."""
    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.3, holder.execute, ["COMMIT"]).start()
    engine = connect(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            rows = conn.exec_driver_sql("SELECT count(*) FROM t").scalar()
    finally:
        engine.dispose()
        holder.close()
    assert (mode, rows) == ("wal", 1)


def test_revision_0007_turns_hidden_states_into_statuses(tmp_path: Path) -> None:
    """Before 0007 a cancelled attempt was ``failed`` with an ``instance …: `` prefix on its error, and a lapsed
    claim ``failed`` with ``lease expired``: the upgrade makes them ``cancelled`` and ``lapsed``, and no other."""
    from datetime import UTC, datetime

    from oms.store.tables import instances, tasks

    engine = connect(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0006")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    old = {"withdrawn": ("failed", "instance cancelled: citizen withdrew"),
           "sibling": ("failed", "instance failed: step 'a' failed"),
           "lapsed": ("failed", "lease expired"),
           "lost": ("failed", "worker_lost"),
           "boom": ("failed", "IRS down"),
           "done": ("done", None)}
    with engine.begin() as conn:
        conn.execute(instances.insert(), [{
            "id": "wf-1", "workflow_id": "w", "version": 1, "status": "failed", "current_step": 0, "payload": {},
            "results": {}, "created_at": now, "updated_at": now, "light": "green", "steps_left": 1, "waiting": {}}])
        conn.execute(tasks.insert(), [{
            "id": f"tk-{name}", "instance_id": "wf-1", "workflow_id": "w", "step_id": name, "step_index": 0,
            "topic": "t", "attempt": 1, "failures": 0, "lost": 0, "status": status, "payload": {}, "error": error,
            "created_at": now, "ready_at": now, "warn_at": now, "expires_at": now, "light": "green"}
            for name, (status, error) in old.items()])
    upgrade(engine)
    with engine.connect() as conn:
        found = {row.id[3:]: (row.status, row.error) for row in conn.execute(tasks.select())}
    engine.dispose()
    assert found == {"withdrawn": ("cancelled", "citizen withdrew"), "sibling": ("cancelled", "step 'a' failed"),
                     "lapsed": ("lapsed", "lease expired"), "lost": ("failed", "worker_lost"),
                     "boom": ("failed", "IRS down"), "done": ("done", None)}
