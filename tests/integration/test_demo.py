"""``oms demo`` runs to completion on the embedded default and shows a red step and its escalation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

OMS = Path(sys.executable).with_name("oms")


def test_oms_demo_shows_a_red_step_and_its_escalation(tmp_path: Path) -> None:
    assert OMS.exists(), f"{OMS} is missing: install the package (scripts/setup)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMS_", "CELERY_"))}  # the embedded default
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
