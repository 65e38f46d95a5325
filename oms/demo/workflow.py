"""The demo's variant of the seed's workflow: the same steps, a short SLA where it is watched, its own id.

``validate_tax_id`` gets 2 seconds instead of 2 minutes, so a slow IRS check
turns red within the demo's run; the other SLAs are the seed's. The id is the
demo's own (``epa_waste_reg_demo``): saving it never changes a user's
``epa_waste_reg``.
"""

from __future__ import annotations

from ..catalog import Workflow

EPA_DEMO = Workflow(
    id="epa_waste_reg_demo",
    description="EPA hazardous-waste registration (Form 8700-12); oms demo: validate_tax_id within 2s",
    steps=[
        {"id": "collect_form", "sla": "5m"},
        {"id": "validate_tax_id", "sla": "2s"},
        {"id": "charge_fee", "sla": "1m"},
        {"id": "assign_inspector", "sla": "48h"},
    ],
)

#: The step the tax validator pulls; the others are pushed to the demo's Celery worker.
PULL_TOPIC = "validate_tax_id"
PUSH_TOPICS = [step.topic for step in EPA_DEMO.steps if step.topic != PULL_TOPIC]

#: Seconds the IRS takes for an ordinary registration, and for the late one (over its 2 s SLA).
IRS_SECONDS = 0.2
LATE_IRS_SECONDS = 3.5
#: Seconds between SLA scans in the demo's processes (the default is 10).
SCAN_INTERVAL = 1.0


def payload(number: int, late: bool = False) -> dict[str, object]:
    """The payload of registration ``number``: a form id, and how long its IRS check takes."""
    return {"form_id": f"F8700-12-{number:02d}", "irs_seconds": LATE_IRS_SECONDS if late else IRS_SECONDS}
