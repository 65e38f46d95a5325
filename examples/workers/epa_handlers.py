"""Push handlers for every step of the EPA example (``-I examples.workers.epa_handlers``)."""

from oms.demo import assign_inspector, charge_fee, collect_form, validate_tax_id

__all__ = ["collect_form", "validate_tax_id", "charge_fee", "assign_inspector"]
