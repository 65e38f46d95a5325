"""The last step of the registration with people in the loop (``examples/workflows/epa_people.yaml``).

    oms worker -I examples.workers.payment_bot,examples.workers.permits
"""

from hms_act import subscribe


@subscribe("issue_permit")
def issue_permit(task):
    """Issue the permit to the inspected facility, once the cooling-off period has passed."""
    visit = task.results["assign_inspector"]
    return {"permit": f"P-{task.payload['form_id']}", "inspector": visit["inspector"], "visited": visit["visit_on"]}
