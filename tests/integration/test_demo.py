"""``oms demo`` runs to completion on the embedded default and shows a red step and its escalation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..services import REDIS_URL

pytestmark = pytest.mark.integration

OMS = Path(sys.executable).with_name("oms")


def test_oms_demo_shows_a_red_step_and_its_escalation(tmp_path: Path) -> None:
    assert OMS.exists(), f"{OMS} is missing: install the package (scripts/setup)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMS_", "CELERY_"))}  # the embedded default
    # the user's own EPA workflow, in the same database: the demo must leave it alone (issue 12, 4.9)
    mine = tmp_path / "mine.yaml"
    mine.write_text("id: epa_waste_reg\nsteps:\n  - {id: collect_form, sla: 5m}\n  - {id: validate_tax_id, sla: 2m}\n")
    registered = subprocess.run([str(OMS), "workflow", "register", str(mine)], cwd=tmp_path, capture_output=True,
                                text=True, env=env)
    assert registered.stdout.strip() == "epa_waste_reg version 1 (2 steps)", registered.stderr
    started = time.monotonic()
    result = subprocess.run([str(OMS), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**env, "COLUMNS": "160"})
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert took < 60, f"oms demo took {took:.0f}s\n{output}"
    assert (tmp_path / "oms.db").exists() and (tmp_path / ".oms" / "broker").is_dir()
    assert re.search(r"F8700-12-04 .*● done 3\.\d+s red", output), output
    assert re.search(r"sla_violation\s*│\s*validate_tax_id .*│ done\s*│ paged=EPA on-call supervisor", output), output
    assert re.search(r"task\.sla_violated\s+validate_tax_id", output), output
    assert re.search(r"4/4 registrations done; [1-9]\d* step\(s\) went red", output), output
    shown = subprocess.run([str(OMS), "workflow", "show", "epa_waste_reg"], cwd=tmp_path, capture_output=True,
                           text=True, env=env).stdout
    assert shown.startswith("# epa_waste_reg version 1\n") and "sla: 2m" in shown and "sla: 2s" not in shown


def test_oms_demo_refuses_a_server_database_or_broker(postgres_url: str, tmp_path: Path) -> None:
    """Regression (issue 12, 4.9): it saved its 2-second SLA over the configured database's epa_waste_reg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMS_", "CELERY_"))}
    for settings in ({"OMS_DATABASE_URL": postgres_url}, {"OMS_BROKER_URL": REDIS_URL}):
        result = subprocess.run([str(OMS), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                env={**env, **settings})
        assert result.returncode == 1 and result.stdout == "", result.stdout
        assert re.fullmatch(r"error: oms demo runs on the embedded default .* or pass --force\n", result.stderr)
    assert not (tmp_path / "oms.db").exists()  # nothing stored, nothing started
