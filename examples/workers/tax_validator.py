# file: workers/tax_validator.py
"""The specification's pull worker: it is not a Celery worker, it polls the task counter."""

import os
import time

from hms_act import fetch_task, complete_task, fail_task


def external_irs_api(form_id):
    """Stand-in for the IRS check: forms whose id ends in 'X' do not match."""
    time.sleep(float(os.environ.get("IRS_LATENCY", "0.05")))
    return not str(form_id).endswith("X")


while True:
    task = fetch_task(topic="validate_tax_id", max_wait="10s")
    if not task:
        continue                        # no work, loop again

    ok = external_irs_api(task.payload["form_id"])
    if ok:
        complete_task(task.id)          # timestamps success
    else:
        fail_task(task.id, reason="IRS mismatch")
