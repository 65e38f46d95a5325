"""The demo's pull worker: the seed's tax-validator loop (``python -m oms.demo.tax_validator``).

Not a Celery worker: it polls the task counter with ``fetch_task`` and reports with
``complete_task`` / ``fail_task``. The IRS is a stand-in that takes as long as
the payload's ``irs_seconds`` and rejects forms whose id ends in ``X``.
"""

from __future__ import annotations

import time

from act import Task, complete_task, fail_task, fetch_task

from .workflow import IRS_SECONDS, PULL_TOPIC


def external_irs_api(task: Task) -> bool:
    time.sleep(float(task.payload.get("irs_seconds", IRS_SECONDS)))
    return not str(task.payload["form_id"]).endswith("X")


def serve(task: Task) -> None:
    if external_irs_api(task):
        complete_task(task.id, {"irs_match": True})
    else:
        fail_task(task.id, reason="IRS mismatch")


def main() -> None:
    """Connect, say ``ready`` on stdout, then serve ``validate_tax_id`` until stopped."""
    first = fetch_task(topic=PULL_TOPIC, max_wait=0)  # opens the database and broker connections
    print("ready", flush=True)
    if first:
        serve(first)
    while True:
        task = fetch_task(topic=PULL_TOPIC, max_wait="10s")
        if task:
            serve(task)


if __name__ == "__main__":
    main()
