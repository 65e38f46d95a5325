"""The ``oms`` command end to end, in subprocesses, on the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import click
import pytest
import yaml

from act import complete_task, fail_task, fetch_task
from oms import Workflow
from oms.cli import main
from oms.durations import utcnow
from oms.sla.scanner import scan_sla

from ..conftest import EPA, Backend
from ..workers import ROOT, wait_finished

pytestmark = pytest.mark.integration

OMS = Path(sys.executable).with_name("oms")
SEED_WORKFLOW = ROOT / "examples/workflows/epa_waste_registration.py"


def oms(backend: Backend, cwd: Path, *args: str, env: dict[str, str] | None = None,
        code: int = 0) -> subprocess.CompletedProcess[str]:
    """Run the installed ``oms`` script; assert its exit code."""
    assert OMS.exists(), f"{OMS} is missing: install the package (scripts/setup)"
    result = subprocess.run([str(OMS), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **backend.env, "PYTHONPATH": str(ROOT), **(env or {})})
    assert result.returncode == code, f"oms {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    return result


def refused(backend: Backend, cwd: Path, *args: str, match: str) -> None:
    """``oms ARGS`` fails with exit code 1 and one line on stderr matching ``match``, no traceback."""
    result = oms(backend, cwd, *args, code=1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(match, lines[0]), lines[0]
    assert lines[0].startswith("error: ")


def all_refused(backend: Backend, cwd: Path, cases: list[tuple[list[str], str]]) -> None:
    """:func:`refused` for each ``(args, match)``, four at a time (each ``oms`` spends a second importing)."""
    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(refused, backend, cwd, *args, match=match) for args, match in cases]:
            future.result()


def _pull(topic: str, fail: str | None = None) -> str:
    task = fetch_task(topic, max_wait="10s")
    assert task is not None, f"nothing offered on {topic}"
    if fail:
        fail_task(task.id, fail)
    else:
        complete_task(task.id, {"by": "test"})
    return task.instance_id


def test_register_start_watch_cancel_retry(backend: Backend, tmp_path: Path) -> None:
    yaml_file = tmp_path / "permit.yaml"
    yaml_file.write_text(yaml.safe_dump({"id": "permit", "steps": [{"id": "review", "sla": "1h"}]}))
    json_file = tmp_path / "renewal.json"
    json_file.write_text(json.dumps({"id": "renewal", "steps": [{"id": "renew", "sla": "1d"}]}))
    out = oms(backend, tmp_path, "workflow", "register", str(SEED_WORKFLOW), str(yaml_file), str(json_file)).stdout
    assert out.splitlines() == ["epa_waste_reg version 1 (4 steps)", "permit version 1 (1 steps)",
                                "renewal version 1 (1 steps)"]
    listed = oms(backend, tmp_path, "workflow", "list").stdout
    assert re.search(r"epa_waste_reg\s+1\s+collect_form > validate_tax_id > charge_fee > assign_inspector", listed)
    shown = oms(backend, tmp_path, "workflow", "show", "epa_waste_reg", "--version", "1").stdout
    assert shown.startswith("# epa_waste_reg version 1\n")
    assert [s["id"] for s in yaml.safe_load(shown)["steps"]] == [s.id for s in Workflow(**EPA).steps]

    # one instance fails at the pull step, is retried from it, and finishes
    first = oms(backend, tmp_path, "start", "epa_waste_reg", "--payload", '{"form_id": "F8700-12-42"}').stdout.strip()
    assert re.fullmatch(r"wf-[0-9a-f]{32}", first)
    assert _pull("collect_form") == first
    _pull("validate_tax_id", fail="IRS mismatch")
    status = oms(backend, tmp_path, "status", first).stdout
    assert re.search(r"status\s+failed", status) and "IRS mismatch" in status
    assert re.search(r"collect_form\s+1\s+done\s+green", status)
    assert re.search(r"validate_tax_id\s+1\s+failed\s+green", status)
    failed = json.loads(oms(backend, tmp_path, "list", "--status", "failed", "--json").stdout)
    assert [i["id"] for i in failed] == [first]
    assert oms(backend, tmp_path, "retry", first).stdout.strip() == f"resumed {first}: validate_tax_id (attempt 2)"
    for topic in ("validate_tax_id", "charge_fee", "assign_inspector"):
        _pull(topic)
    assert wait_finished([first]) == {first: "done"}
    kinds = [e["kind"] for e in json.loads(oms(backend, tmp_path, "history", first, "--json").stdout)]
    assert kinds[:8] == ["workflow.started", "task.queued", "task.started", "task.done", "task.queued",
                         "task.started", "task.failed", "workflow.failed"]
    assert kinds[8:11] == ["workflow.resumed", "task.retried", "task.started"] and kinds[-1] == "workflow.done"
    history = oms(backend, tmp_path, "history", first).stdout.splitlines()
    assert re.search(r"task\.failed\s+validate_tax_id\s+1\s+.*IRS mismatch", "\n".join(history))
    assert history[-1].split()[1] == "workflow.done"

    # the payload from its variable; cancelled while queued
    second = oms(backend, tmp_path, "start", "epa_waste_reg", env={"OMS_PAYLOAD": '{"form_id": "E"}'}).stdout.strip()
    assert oms(backend, tmp_path, "cancel", second, "--reason", "duplicate").stdout.strip() == f"cancelled {second}"
    assert re.search(r"status\s+cancelled", oms(backend, tmp_path, "status", second).stdout)

    # a third one is late: after a scan an hour ahead, `list --light red` finds it alone
    third = oms(backend, tmp_path, "start", "epa_waste_reg", "--payload", '{"form_id": "L"}').stdout.strip()
    assert scan_sla(utcnow() + timedelta(hours=1)).violations == 1
    red = json.loads(oms(backend, tmp_path, "list", "--light", "red", "--json").stdout)
    assert [(i["id"], i["current_step"]) for i in red] == [(third, "collect_form")]
    table = oms(backend, tmp_path, "list", "--workflow", "epa_waste_reg").stdout.splitlines()
    assert [line.split()[0] for line in table[1:]] == [third, second, first]
    assert re.search(r"running\s+red\s+collect_form", table[1])
    assert re.search(r"collect_form\s+1\s+pending\s+red", oms(backend, tmp_path, "status", third).stdout)


def test_unknown_ids_and_refused_changes_are_one_line_and_exit_code_1(backend: Backend, tmp_path: Path) -> None:
    oms(backend, tmp_path, "workflow", "register", str(SEED_WORKFLOW))
    unknown = "wf-" + "0" * 32
    all_refused(backend, tmp_path, [
        (["status", unknown], rf"unknown workflow instance '{unknown}'"),
        (["history", unknown], "unknown workflow instance"),
        (["cancel", unknown], "unknown workflow instance"),
        (["retry", unknown], "unknown workflow instance"),
        (["status", "nope"], "malformed instance id 'nope'"),
        (["start", "no_such_flow"], "unknown workflow 'no_such_flow'"),
        (["workflow", "show", "epa_waste_reg", "--version", "9"], "unknown workflow 'epa_waste_reg' version 9"),
    ])
    running = oms(backend, tmp_path, "start", "epa_waste_reg").stdout.strip()
    refused(backend, tmp_path, "retry", running, match="cannot go from 'running'")
    oms(backend, tmp_path, "cancel", running)
    oms(backend, tmp_path, "cancel", running)  # cancelling twice changes nothing
    refused(backend, tmp_path, "retry", running,
            match="cannot go from 'cancelled' to 'running': only a failed instance is retried")


def test_bad_files_and_payloads_are_one_line_and_exit_code_1(sqlite_backend: Backend, tmp_path: Path) -> None:
    """Parsing happens before the database is touched: the embedded default is enough."""
    oms(sqlite_backend, tmp_path, "workflow", "register", str(SEED_WORKFLOW))
    bad_sla = tmp_path / "bad.yaml"
    bad_sla.write_text("id: bad\nsteps:\n  - {id: a, sla: 1m}\n  - {id: b, sla: soon}\n")
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "x", "steps": [')
    crashing = tmp_path / "crashing.py"
    crashing.write_text("import no_such_module\n")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("id: caf\xe9\nsteps: []\n".encode("latin-1"))
    deep = tmp_path / "deep.json"
    deep.write_text('{"id": "deep", "steps": ' + "[" * 50_000 + "]" * 50_000 + "}")
    twice = tmp_path / "twice.yaml"
    twice.write_text("id: twice\nsteps:\n  - {id: s, sla: 1m}\nsteps: []\n")
    forever = tmp_path / "forever.yaml"
    forever.write_text("id: forever\nsla: 3000000d\nsteps:\n  - {id: s, sla: 1m}\n")
    nested = '{"a":' * 1000 + "1" + "}" * 1000
    all_refused(sqlite_backend, tmp_path, [
        # issue 12, 4.4 and 4.5: each was a traceback or a stored instance
        (["start", "epa_waste_reg", "--payload", nested], "--payload is nested too deeply"),
        (["start", "epa_waste_reg", "--payload", '{"a": "\\u0000"}'], r"payload\['a'\] holds a NUL character"),
        (["workflow", "register", str(latin1)], "latin1.yaml is not UTF-8 text"),
        (["workflow", "register", str(deep)], "deep.json is nested too deeply"),
        (["workflow", "register", str(twice)], "twice.yaml is not valid yaml: duplicate key 'steps'"),
        (["workflow", "register", str(forever)], "sla: duration '3000000d' is out of range: at most 365d"),
        (["--broker-url", "bogus://x", "start", "epa_waste_reg"], "OMS_BROKER_URL: .*unknown broker transport 'bogus'"),
    ])
    assert oms(sqlite_backend, tmp_path, "list", "--json").stdout.strip() == "[]"  # nothing was stored
    all_refused(sqlite_backend, tmp_path, [
        (["start", "epa_waste_reg", "--payload", "{form_id: 1}"], "--payload is not valid JSON"),
        (["start", "epa_waste_reg", "--payload", "[1, 2]"], "must be a JSON object"),
        (["workflow", "register", str(SEED_WORKFLOW), str(bad_sla)],
         r"invalid workflow 'bad': steps\[1\]\.sla: not a duration: 'soon'"),
        (["workflow", "register", str(broken)], "broken.json is not valid json"),
        (["workflow", "register", str(crashing)], "cannot load .*crashing.py: ModuleNotFoundError"),
        (["workflow", "register", str(empty)], "empty.py defines no Workflow"),
        (["workflow", "register", str(tmp_path / "missing.yaml")], "cannot read .*missing.yaml"),
        (["workflow", "register", str(tmp_path / "notes.txt")], "expected a Python module"),
    ])
    assert "bad" not in oms(sqlite_backend, tmp_path, "workflow", "list").stdout.split()  # nothing saved


def test_every_option_is_read_from_its_variable_and_says_so() -> None:
    def commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
        found: list[tuple[str, click.Command]] = [(path, group)]
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += commands(command, f"{path} {name}")
            else:
                found.append((f"{path} {name}", command))
        return found

    seen = 0
    for path, command in commands(main, "oms"):
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("help", "version"):
                continue
            assert isinstance(param.envvar, str) and param.envvar.startswith("OMS_"), (path, param.name)
            assert f"(env: {param.envvar})" in (param.help or ""), (path, param.name)
            seen += 1
        if path != "oms workflow":
            assert "Example" in (command.help or ""), f"{path} --help has no example"
    assert seen >= 20


def test_help_shows_examples_and_variables(sqlite_backend: Backend, tmp_path: Path) -> None:
    out = oms(sqlite_backend, tmp_path, "start", "--help").stdout
    assert "(env: OMS_PAYLOAD)" in out and "oms start epa_waste_reg --payload" in out
    assert "(env: OMS_DATABASE_URL)" in oms(sqlite_backend, tmp_path, "--help").stdout


class Spawned:
    """A long-running ``oms``/``python`` command with its output in a log file."""

    def __init__(self, backend: Backend, cwd: Path, name: str, *command: str) -> None:
        self.log = cwd / f"{name}.log"
        self._out = self.log.open("w")
        self.process = subprocess.Popen(command, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT,
                                        env={**os.environ, **backend.env, "PYTHONPATH": str(ROOT)},
                                        start_new_session=True)

    def wait_for(self, marker: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{marker!r} not seen (exit {self.process.poll()}):\n{self.log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(5)
        self._out.close()


def test_the_readme_lab_in_separate_processes(backend: Backend, tmp_path: Path) -> None:
    """The README's lab: load the workflow, `oms worker -B`, the tax validator, kick off, `oms history`."""
    python = sys.executable
    loaded = subprocess.run([python, str(SEED_WORKFLOW)], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, **backend.env, "PYTHONPATH": str(ROOT)})
    assert loaded.returncode == 0, loaded.stderr
    worker = Spawned(backend, tmp_path, "worker", str(OMS), "worker", "-B", "-c", "1", "-I",
                     "examples.workers.epa_handlers,examples.workers.payment_bot,examples.workers.governance")
    validator = Spawned(backend, tmp_path, "validator", python, str(ROOT / "examples/workers/tax_validator.py"))
    try:
        worker.wait_for(" ready.")
        queues = worker.log.read_text().splitlines()[0]
        assert queues.startswith("oms: celery -A oms worker -Q collect_form,assign_inspector,charge_fee,"
                                 "sla_violation,sla_warning,oms "), queues
        kicked = subprocess.run([python, str(ROOT / "examples/kick_off_instance.py")], cwd=tmp_path,
                                capture_output=True, text=True, env={**os.environ, **backend.env})
        assert kicked.returncode == 0, kicked.stderr
        instance_id = kicked.stdout.strip()
        assert wait_finished([instance_id]) == {instance_id: "done"}
    finally:
        validator.stop()
        worker.stop()
    log = oms(backend, tmp_path, "history", instance_id).stdout
    assert [line.split()[1] for line in log.splitlines()[1:]][-1] == "workflow.done"
    assert "worker_id=" in log


def test_oms_beat_sends_the_sla_scan(sqlite_backend: Backend, tmp_path: Path) -> None:
    beat = Spawned(sqlite_backend, tmp_path, "beat", str(OMS), "beat", "--interval", "0.5")
    try:
        beat.wait_for("Sending due task oms-scan-sla (oms.scan_sla)", timeout=30)
    finally:
        beat.stop()
    assert beat.log.read_text().startswith("oms: celery -A oms beat -s ")


def test_calendars_from_files_and_a_paused_step_in_oms_status(sqlite_backend: Backend, tmp_path: Path) -> None:
    from act import pause_clock
    from oms import start_workflow

    out = oms(sqlite_backend, tmp_path, "calendar", "register", str(ROOT / "examples/calendars/epa_business.yaml"))
    assert out.stdout.strip() == "epa_business saved (America/New_York); 0 open steps rescheduled"
    assert "epa_business  America/New_York  mon-fri 08:30-17:00  US" in oms(sqlite_backend, tmp_path, "calendar",
                                                                         "list").stdout
    shown = oms(sqlite_backend, tmp_path, "calendar", "show", "epa_business", "--days", "7").stdout
    assert yaml.safe_load(shown)["closed"] == ["2026-12-24"] and shown.count("closed") >= 3  # the key, Sat, Sun
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\ntimezone: Mars/Olympus\nhours: {mon-fri: '09:00-17:00'}\n")
    refused(sqlite_backend, tmp_path, "calendar", "register", str(bad), match=r"unknown time zone 'Mars/Olympus'")
    refused(sqlite_backend, tmp_path, "calendar", "show", "nowhere", match=r"unknown calendar 'nowhere'")
    Workflow(id="permit", calendar="epa_business", steps=[{"id": "review_permit", "sla": "2bd"}]).save()
    instance_id = start_workflow("permit", payload={})
    task = fetch_task("review_permit", max_wait=5)
    assert task is not None and pause_clock(task.id, "waiting for citizen")
    status = oms(sqlite_backend, tmp_path, "status", instance_id).stdout
    assert "(paused)" in status and "(waiting for citizen)" in status and "working time, epa_business" in status
    clock = json.loads(oms(sqlite_backend, tmp_path, "status", instance_id, "--json").stdout)["tasks"][0]["sla_clock"]
    assert clock["paused"] is True and clock["calendar"] == "epa_business"


def test_people_and_business_keys_on_the_command_line(backend: Backend, tmp_path: Path) -> None:
    from oms.store import tokens, users

    from ..unit.test_people import PORTAL

    made = oms(backend, tmp_path, "user", "create", "alice", "--groups", "inspectors", "--email", "alice@agency.gov")
    secret = made.stdout.strip()
    assert "shown once" in made.stderr and users.find_digest(tokens.digest(secret)) is not None
    oms(backend, tmp_path, "user", "create", "dave", "--groups", "inspectors,supervisors", "--role", "supervisor")
    Workflow(**PORTAL).save()  # type: ignore[arg-type]
    instance_id = oms(backend, tmp_path, "start", "portal", "--key", "F8700-12-42").stdout.strip()
    all_refused(backend, tmp_path, [
        (["user", "create", "alice", "--groups", "x"], r"a user named 'alice' exists already"),
        (["user", "disable", "zoe"], r"unknown user 'zoe'"),
        (["start", "portal", "--key", "F8700-12-42"], f"belongs to running instance {instance_id}"),
    ])
    listed = json.loads(oms(backend, tmp_path, "user", "list", "--json").stdout)
    assert [(u["name"], u["groups"], u["email"], u["role"]) for u in listed] == [
        ("alice", ["inspectors"], "alice@agency.gov", "person"), ("dave", ["inspectors", "supervisors"], None,
                                                                  "supervisor")]
    assert secret not in oms(backend, tmp_path, "user", "list").stdout
    assert oms(backend, tmp_path, "user", "disable", "alice").stdout.strip() == (
        "disabled alice: 0 claimed step(s) went back to their queues")
    assert users.find_digest(tokens.digest(secret)) is None
    [found] = json.loads(oms(backend, tmp_path, "list", "--key", "F8700-12-42", "--json").stdout)
    assert (found["id"], found["business_key"]) == (instance_id, "F8700-12-42")
