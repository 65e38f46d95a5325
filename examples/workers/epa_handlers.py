"""The EPA steps nobody else takes: the citizen portal's form, and the inspector roster.

``validate_tax_id`` is pulled by ``tax_validator.py`` and ``charge_fee`` is pushed to
``payment_bot.py``; run all three for a complete registration:

    oms worker -I examples.workers.epa_handlers,examples.workers.payment_bot
    python examples/workers/tax_validator.py
"""

from hms_act import subscribe

INSPECTORS = ["R. Alvarez", "J. Chen", "M. Okafor"]


@subscribe("collect_form")
def collect_form(task):
    """The portal has the form already: record which one, as the step's result."""
    return {"form": task.payload["form_id"]}


@subscribe("assign_inspector")
def assign_inspector(task):
    """Pick an inspector by a stable hash of the form id."""
    form_id = task.payload["form_id"]
    return {"inspector": INSPECTORS[sum(map(ord, form_id)) % len(INSPECTORS)]}
