"""docker-compose.yml and the Grafana dashboard, checked without a Docker engine.

``docker-compose config`` validates the compose file; every SQL query of the
dashboard (panels and variables) runs against PostgreSQL holding a few workflows,
with Grafana's macros expanded the way its PostgreSQL data source expands them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from act import complete_task, fail_task, fetch_task
from oms import Workflow, scan_sla, start_workflow
from oms.durations import utcnow
from oms.store.db import transaction

from ..conftest import EPA, Backend
from ..workers import ROOT

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "grafana/dashboards/oms-sla.json"
PROVISIONING = ROOT / "grafana/provisioning"
SERVICES = {"redis", "postgres", "oms", "act", "api", "flower", "grafana", "migrate"}
EPA_STEPS = [step.id for step in Workflow(**EPA).steps]


def compose_config(**env: str) -> dict[str, Any]:
    """``docker-compose config`` of the repository's file, with ``env`` set, parsed."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is missing: scripts/services installs it (Debian: apt-get install docker-compose)",
                    pytrace=False)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("COMPOSE_", "OMS_", "GRAFANA_", "FLOWER_", "DOCKER_"))}
    result = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "config"], cwd=ROOT, text=True,
                            capture_output=True, env={**clean, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_file_is_valid_and_runs_the_seed_lab() -> None:
    services = compose_config()["services"]
    assert set(services) == SERVICES
    # `docker compose up oms act grafana`: the scanner (beat in a worker on `oms`), the push workers, the dashboard
    assert re.search(r"celery -A oms worker -B .*-Q oms,sla_violation", services["oms"]["command"])
    assert re.search(r"celery -A oms worker -Q collect_form,charge_fee,assign_inspector ", services["act"]["command"])
    # the schema is migrated before any worker starts (a worker refuses a database behind its code)
    assert services["migrate"]["command"] in ("oms db upgrade", ["oms", "db", "upgrade"])
    for name in ("oms", "act", "api", "flower"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # the HTTP API on loopback's port 8000 of the host, listening on every address of its container
    api = services["api"]
    assert api["command"] in ("oms api", ["oms", "api"]) and api["environment"]["OMS_API_HOST"] == "0.0.0.0"
    assert api["ports"][0].startswith("127.0.0.1:8000:8000") or api["ports"][0]["host_ip"] == "127.0.0.1"
    for name in ("oms", "act"):
        for module in re.search(r"-I (\S+)", services[name]["command"]).group(1).split(","):  # type: ignore[union-attr]
            assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
    grafana = services["grafana"]
    assert grafana["ports"][0].startswith("127.0.0.1:3000:3000")
    assert (grafana["environment"]["GF_SECURITY_ADMIN_USER"], grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]) == (
        "admin", "admin")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == str(PROVISIONING)
    assert mounts["/var/lib/grafana/dashboards"] == str(DASHBOARD.parent)
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == ""  # none unless the environment gives one


def test_compose_credentials_come_from_the_environment() -> None:
    services = compose_config(GRAFANA_ADMIN_USER="ops", GRAFANA_ADMIN_PASSWORD="s3cret",
                              FLOWER_BASIC_AUTH="me:pw", OMS_DB_PASSWORD="dbpw")["services"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_USER"] == "ops"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"
    assert services["grafana"]["environment"]["OMS_DB_PASSWORD"] == "dbpw"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "me:pw"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "dbpw"
    assert services["act"]["environment"]["OMS_DATABASE_URL"] == "postgresql+psycopg://oms:dbpw@postgres:5432/oms"


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_provisioning_points_the_dashboard_at_the_database() -> None:
    source = yaml.safe_load((PROVISIONING / "datasources/oms.yaml").read_text())["datasources"][0]
    provider = yaml.safe_load((PROVISIONING / "dashboards/oms.yaml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    wanted = {"type": source["type"], "uid": source["uid"]}
    queries = [p for p in _panels(_dashboard()["panels"]) if p["type"] != "row"]
    assert queries and all(p["datasource"] == wanted for p in queries)
    assert all(v["datasource"] == wanted for v in _dashboard()["templating"]["list"])
    environment = compose_config()["services"]["grafana"]["environment"]
    for name in re.findall(r"\$\{(\w+)\}", (PROVISIONING / "datasources/oms.yaml").read_text()):
        assert name in environment, f"the datasource needs {name} from the grafana service's environment"


# -- every query, run against PostgreSQL --------------------------------------------


def _quoted(values: list[str]) -> str:
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def grafana_sql(sql: str, variables: dict[str, list[str]], start: datetime, end: datetime) -> str:
    """Expand the template variables and macros the dashboard uses, as Grafana's PostgreSQL source does."""
    sql = sql.replace("$__interval", "1m")
    for name, values in variables.items():  # multi-value variables: quoted, comma-separated
        sql = sql.replace(f"${{{name}:sqlstring}}", _quoted(values)).replace(f"${name}", _quoted(values))

    def group(match: re.Match[str]) -> str:
        seconds = {"s": 1, "m": 60, "h": 3600}[match[3]] * int(match[2])
        return f'floor(extract(epoch from {match[1]})/{seconds})*{seconds} AS "time"'

    sql = re.sub(r"\$__timeGroupAlias\(([\w.]+),\s*'?(\d+)([smh])'?\)", group, sql)
    sql = re.sub(r"\$__timeFilter\(([\w.]+)\)", rf"\1 BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'", sql)
    assert "$" not in sql, f"a macro or variable the test does not expand:\n{sql}"
    return sql


def _finish(topic: str, fail: str | None = None) -> None:
    task = fetch_task(topic, max_wait="10s")
    assert task is not None, topic
    if fail:
        fail_task(task.id, fail)
    else:
        complete_task(task.id)


def _some_workflows() -> None:
    """EPA done and EPA failed; a permit review past its 1 s SLA (red); a renewal past its warning (yellow)."""
    Workflow(**EPA).save()
    Workflow(id="permit", steps=[{"id": "review", "sla": "1s"}]).save()
    Workflow(id="renewal", steps=[{"id": "check", "sla": "1h", "warn_at": "1s"}]).save()
    start_workflow("epa_waste_reg", payload={"form_id": "done"})
    for step in EPA_STEPS:
        _finish(step)
    start_workflow("epa_waste_reg", payload={"form_id": "failed"})
    _finish("collect_form")
    _finish("validate_tax_id", fail="IRS mismatch")
    start_workflow("permit", payload={})
    start_workflow("renewal", payload={})
    time.sleep(1.2)
    report = scan_sla()
    assert (report.violations, report.warnings) == (1, 1)


def test_every_dashboard_query_runs_on_postgres(postgres_backend: Backend) -> None:
    _some_workflows()
    start, end = utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1)
    dashboard = _dashboard()
    variables: dict[str, list[str]] = {}
    with transaction() as session:
        for variable in dashboard["templating"]["list"]:  # in order: a later one may use an earlier one
            sql = grafana_sql(variable["query"], variables, start, end)
            variables[variable["name"]] = [row[0] for row in session.execute(text(sql))]
        results: dict[str, list[dict[str, Any]]] = {}
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                sql = grafana_sql(target["rawSql"], variables, start, end)
                results[panel["title"]] = [dict(row._mapping) for row in session.execute(text(sql))]
                if target["format"] == "time_series":
                    assert all("time" in row for row in results[panel["title"]]), panel["title"]
    assert sorted(variables["workflow"]) == ["epa_waste_reg", "permit", "renewal"]
    assert variables["step"] == [f"epa_waste_reg/{s}" for s in EPA_STEPS] + ["permit/review", "renewal/check"]
    assert results["Open steps by light"] == [{"green": 0, "yellow": 1, "red": 1}]
    assert results["Instances started in range, by status"] == [{"running": 2, "done": 1, "failed": 1, "cancelled": 0}]
    overdue = results["Overdue steps: open and past their SLA"]
    assert [(r["workflow"], r["step"], r["status"]) for r in overdue] == [("permit", "review", "pending")]
    assert overdue[0]["overdue (s)"] > 0
    by_step = {(r["workflow"], r["step"]): r for r in results["SLA by step"]}
    assert by_step["epa_waste_reg", "collect_form"]["attempts"] == 2 and by_step["permit", "review"]["red"] == 1
    assert by_step["renewal", "check"]["yellow"] == 1 and by_step["epa_waste_reg", "charge_fee"]["green"] == 1
    waits = results["Queue wait p95 by step (ready to started)"]
    assert {r["metric"] for r in waits} == {f"epa_waste_reg/{s}" for s in EPA_STEPS}
    assert all(r["value"] >= 0 for r in waits)
    assert {r["metric"] for r in results["Run time p95 by step (started to finished)"]} == {
        f"epa_waste_reg/{s}" for s in EPA_STEPS}
    events = results["SLA warnings and breaches recorded by the scanner"]
    assert (sum(r["warnings"] for r in events), sum(r["breaches"] for r in events)) == (1, 1)


def test_the_per_step_panel_repeats_with_each_step_alone(postgres_backend: Backend) -> None:
    """Grafana repeats the light panel once per step, with ``$step`` set to that step only."""
    _some_workflows()
    start, end = utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1)
    panel = next(p for p in _panels(_dashboard()["panels"]) if p.get("repeat") == "step")
    lights = {}
    with transaction() as session:
        for step in ("epa_waste_reg/collect_form", "epa_waste_reg/validate_tax_id", "permit/review", "renewal/check"):
            variables = {"workflow": ["epa_waste_reg", "permit", "renewal"], "step": [step]}
            sql = grafana_sql(panel["targets"][0]["rawSql"], variables, start, end)
            lights[step] = dict(session.execute(text(sql)).one()._mapping)
    assert lights == {
        "epa_waste_reg/collect_form": {"green": 2, "yellow": 0, "red": 0},
        "epa_waste_reg/validate_tax_id": {"green": 2, "yellow": 0, "red": 0},
        "permit/review": {"green": 0, "yellow": 0, "red": 1},
        "renewal/check": {"green": 0, "yellow": 1, "red": 0},
    }
