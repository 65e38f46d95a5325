"""Push handlers of the demo's Celery worker (``-I oms.demo.handlers``).

The EPA steps nobody pulls, the seed's payment bot among them, and a governance
agent for the escalations the SLA scanner raises.
"""

from __future__ import annotations

import time
from typing import Any

from act import Task, subscribe

from ..settings import get_settings


@subscribe("collect_form")
def collect_form(task: Task) -> dict[str, Any]:
    time.sleep(0.2)
    return {"form": task.payload["form_id"], "pages": 4}


@subscribe("charge_fee")
def handle_payment(task: Task) -> dict[str, Any]:
    """The seed's payment bot, with a stand-in for Stripe that always accepts the $100 fee."""
    time.sleep(0.2)
    return {"charged_usd": 100, "form": task.payload["form_id"]}


@subscribe("assign_inspector")
def assign_inspector(task: Task) -> dict[str, Any]:
    time.sleep(0.1)
    return {"inspector": f"insp-{sum(map(ord, task.instance_id)) % 97:02d}"}


@subscribe(get_settings().sla_violation_topic)
def page_supervisor(task: Task) -> dict[str, Any]:
    """A breach: page the on-call supervisor (here: say who would have been paged, and why)."""
    about = task.payload
    return {"paged": "EPA on-call supervisor", "step": about["step"], "instance": about["instance_id"],
            "overdue_by_s": about["overdue_by_s"]}


@subscribe(get_settings().sla_warning_topic)
def notify_team(task: Task) -> dict[str, Any]:
    """A warning (yellow light): tell the team that a step is close to its SLA."""
    about = task.payload
    return {"notified": "EPA registration team", "step": about["step"], "instance": about["instance_id"]}
