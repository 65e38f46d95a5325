"""The governance agent: it takes the escalations the SLA scanner raises, like any other step.

    oms worker -B -I examples.workers.governance     # beat + the SLA scan + these handlers
"""

import logging

from hms_act import subscribe

log = logging.getLogger("governance")


def page_the_supervisor(workflow, step, overdue_by_s):
    log.warning("PAGE: step %s of %s is %.1fs past its SLA", step, workflow, overdue_by_s)


@subscribe("sla_violation")
def escalate(task):
    page_the_supervisor(task.payload["workflow"], task.payload["step"], task.payload["overdue_by_s"])
    return {"paged": "supervisor"}


@subscribe("sla_warning")
def warn(task):
    log.info("step %s of %s is close to its SLA", task.payload["step"], task.payload["workflow"])
