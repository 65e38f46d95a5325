"""``oms doctor``: check the database, the broker, the upkeep, the workers and every topic."""

from __future__ import annotations

import json
import sys

import click

from ..ops.doctor import FAIL, diagnose
from . import render
from .base import CONTEXT, RET_ERROR, RET_OK, env_option

_MARKS = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}


@click.command(context_settings=CONTEXT)
@env_option("--timeout", env="OMS_DOCTOR_TIMEOUT", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
            help="Seconds to wait for Celery workers to answer.")
@env_option("--json", "as_json", env="OMS_JSON", is_flag=True, help="Print the checks as JSON.")
def doctor(timeout: float, as_json: bool) -> None:
    """Check that this deployment can run its workflows; exit with 1 on any failed check.

    Checks the database (reachable, schema at this oms's revision), the broker, the
    newest SLA scan and reconciler pass (is beat running?), the Celery workers that
    answer, and every topic: messages queued, steps waiting, who consumes it. A topic
    whose steps wait with no live consumer fails; an idle one without consumer warns
    (pull workers show as consumers on RabbitMQ only).

    \b
    Examples:
      oms doctor
      oms doctor --json | jq '.[] | select(.status == "fail")'
    """
    checks = diagnose(timeout)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        render.table(["", "check", "detail"], [[_MARKS[c.status], c.name, c.detail] for c in checks])
    sys.exit(RET_ERROR if any(c.status == FAIL for c in checks) else RET_OK)
